"""A run killed with SIGKILL and resumed produces the same metrics as an uninterrupted run."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrl.run import describe_state, read_state
from reasonrl.train import train
from tests.helpers import tiny_config, tiny_overrides

ROOT = Path(__file__).parents[2]


def metrics_by_step(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"duplicate or unordered steps: {steps}"
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith(("time/", "memory/"))} for r in rows}


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "reasonrl.cli", "train", *args, "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


EXTRA = ["steps=12", "save_every=3", "algo.kl.coef=0.02", "optim.schedule=cosine", "optim.warmup_steps=2"]


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    return train(tiny_config(tmp_path_factory.mktemp("reference"), "name=straight", *EXTRA), quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path, reference_dir, signum):
    """SIGKILL: the run resumes from its last checkpoint (step 3 or later). SIGTERM: it finishes its step,
    writes a checkpoint of it, records 'stopped' and exits 143. Either way --resume gives the same numbers."""
    proc = cli(*tiny_overrides(tmp_path, "name=killed", *EXTRA))
    ckpts = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / "step_000003").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    killed_dir = tmp_path / "runs" / "killed"
    state = read_state(killed_dir)
    assert max(metrics_by_step(killed_dir)) < 12, "the run finished before it was killed"
    assert not any(p.name.startswith(".tmp") and (p / "trainer_state.json").exists() for p in ckpts.iterdir())
    if signum == signal.SIGKILL:
        assert state["state"] == "killed", state
    else:
        assert proc.returncode == 143, out
        assert state["state"] == "stopped" and state["signal"] == "SIGTERM", state
        assert (ckpts / f"step_{state['step']:06d}").is_dir(), sorted(p.name for p in ckpts.iterdir())
        assert max(metrics_by_step(killed_dir)) == state["step"]
        assert f"stopped: stopped by SIGTERM after step {state['step']}" in out, out
    assert "--resume" in describe_state(killed_dir)
    resumed = cli("--resume", str(killed_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert read_state(killed_dir)["state"] == "finished"

    want, got = metrics_by_step(reference_dir), metrics_by_step(killed_dir)
    assert sorted(got) == sorted(want) == list(range(13))
    for step in want:
        assert want[step].keys() == got[step].keys(), step
        for key, value in want[step].items():
            other = got[step][key]
            if isinstance(value, float):
                assert math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-7), (step, key, value, other)
            else:
                assert value == other, (step, key)
