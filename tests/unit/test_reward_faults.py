"""Rewards that misbehave in every way a user's function can: each failure is named in the log with its sample,
rewards.on_error applies, nothing NaN reaches a total, and the breaker stops a reward that is broken for good
(instead of training on zeros, or waiting out every call's timeout)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from reasonrl.config import RewardConfig
from reasonrl.rewards.compose import RewardComposer, RewardError
from reasonrl.types import Example

FAULTS = textwrap.dedent("""
    import os, time

    def ok(completion, example, **kw):
        return 1.0

    def nan(completion, example, **kw):
        return float("nan")

    def inf(completion, example, **kw):
        return float("inf")

    def text(completion, example, **kw):
        return "1.0"

    def tensor(completion, example, **kw):
        import torch
        return torch.tensor(1.0)

    def raises_sometimes(completion, example, **kw):
        if "boom" in completion:
            raise RuntimeError("boom on this sample")
        return 1.0

    def sleeps(completion, example, **kw):
        time.sleep(3600)

    def allocates(completion, example, **kw):
        hog = []
        while True:
            hog.append(bytearray(64 * 2**20))

    def forks(completion, example, pidfile, **kw):
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                time.sleep(3600)
                os._exit(0)
            with open(pidfile, "a") as f:
                f.write(f"{pid}\\n")
        time.sleep(3600)

    def wrong_length(completions, examples, **kw):
        return [1.0] * (len(completions) + 1)
    wrong_length.batched = True
""")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("faults") / "faults.py"
    path.write_text(FAULTS)
    return str(path)


def examples(n: int) -> list[Example]:
    return [Example(id=f"t/{i}", prompt="What is 6 * 7?", answer="42") for i in range(n)]


def score(faults: str, name: str, completions: list[str], **cfg: object) -> list:
    cfg = {"timeout_s": 20.0} | cfg  # the tensor reward's first call imports torch
    rewards = RewardConfig(components={f"{faults}:ok": 1.0, f"{faults}:{name}": 1.0}, workers=1, **cfg)  # type: ignore[arg-type]
    with RewardComposer(rewards) as composer:
        return composer.score(completions, examples(len(completions)))


BAD_VALUES = {
    "nan": "returned nan",
    "inf": "returned inf",
    "text": "returned str '1.0'",
    "tensor": "returned torch.Tensor",
    "wrong_length": "returned 5 values for 4 completions",
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_a_bad_return_value_is_a_named_failure_and_never_a_nan(faults, name, caplog):
    scored = score(faults, name, ["42"] * 4, max_failure_share=1.0)
    assert all(s.total == 1.0 for s in scored)  # on_error=zero: the bad part counts 0, the good one stays
    assert all(BAD_VALUES[name] in s.errors[0] for s in scored), scored[0].errors
    assert f"{name}" in caplog.text and "t/3" in caplog.text  # the reward and the sample, in the log


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_the_breaker_stops_a_reward_that_fails_on_every_sample(faults, name):
    with pytest.raises(
        RewardError,
        match=rf"reward '.*:{name}' failed on 4 of 4 samples, more than "
        r"rewards.max_failure_share=0.5: .*last sample: example 't/3'",
    ):
        score(faults, name, ["42"] * 4)


def test_a_reward_that_raises_on_some_samples_follows_on_error(faults):
    completions = ["42", "42 boom", "42", "42"]
    zero = score(faults, "raises_sometimes", completions)
    assert [s.total for s in zero] == [2.0, 1.0, 2.0, 2.0] and "boom on this sample" in zero[1].errors[0]
    skip = score(faults, "raises_sometimes", completions, on_error="skip_group")
    assert [s.total for s in skip] == [2.0, None, 2.0, 2.0]  # the caller leaves that sample's group out
    with pytest.raises(RewardError, match=r"on example 't/1': RuntimeError: boom on this sample"):
        score(faults, "raises_sometimes", completions, on_error="stop")


def test_a_reward_that_never_returns_stops_after_k_timeouts_not_after_all_of_them(faults):
    started = time.monotonic()
    with pytest.raises(
        RewardError,
        match=r"reward '.*:sleeps' failed 2 times in a row "
        r"\(rewards.max_timeouts_in_row\): timeout after 1.0s",
    ):
        score(faults, "sleeps", ["42"] * 16, max_timeouts_in_row=2, timeout_s=1.0)
    assert time.monotonic() - started < 8  # 2 timeouts of 1 s (+ worker starts), not 16


def test_a_reward_that_allocates_without_end_hits_the_memory_limit_and_its_worker_is_replaced(faults):
    scored = score(faults, "allocates", ["42"] * 2, memory_mb=300, max_failure_share=1.0)
    assert all("MemoryError" in s.errors[0] and "rewards.memory_mb" in s.errors[0] for s in scored)
    assert all(s.parts[next(iter(s.parts))] == 1.0 for s in scored)  # the good reward, in a fresh worker


def test_a_reward_that_forks_leaves_no_process_behind(faults, tmp_path):
    pidfile = tmp_path / "pids"
    rewards = RewardConfig(
        components={f"{faults}:forks": 1.0},
        workers=1,
        timeout_s=1.0,
        max_failure_share=1.0,
        options={f"{faults}:forks": {"pidfile": str(pidfile)}},
    )
    with RewardComposer(rewards) as composer:
        scored = composer.score(["42"], examples(1))
    assert "timeout" in scored[0].errors[0]
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)  # the worker's whole process group was killed


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()
