"""placement=ray on a local Ray cluster: the same numbers as the local placement, asynchronous rollouts that
learn with bounded staleness, and runs that survive a killed or stalled rollout actor, a killed driver, and
stop cleanly when a learner rank dies."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrl.run import read_state
from reasonrl.train import train
from tests.helpers import tiny_config, tiny_overrides

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
TOYS = ROOT / "tests" / "toy_rewards.py"
RAY = ["placement.name=ray", "placement.rollout_workers=2", "placement.learners=2"]
BASE = ["steps=6", "save_every=2", "algo.kl.coef=0.02", "eval.before=skip", "log.report=false"]
SLOW = [f"rewards.components={{{TOYS}:slow_digits: 1.0}}"]
COMPARED = ("rollout/reward", "rollout/completion_tokens", "loss/", "optim/grad_norm", "rollout/staleness")


def metrics_by_step(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows}


def assert_same_metrics(want_dir: Path, got_dir: Path, rel: float = 1e-4) -> None:
    """Every step's rewards, lengths, losses and gradient norm agree (to float sums in another order)."""
    want, got = metrics_by_step(want_dir), metrics_by_step(got_dir)
    assert sorted(want) == sorted(got)
    for step in want:
        keys = [k for k in want[step] if k.startswith(COMPARED)]
        assert keys or step == 0
        for key in keys:
            assert got[step][key] == pytest.approx(want[step][key], rel=rel, abs=1e-6), (step, key)


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reasonrl.cli", "train", *args, "--quiet"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, what: str, limit: float = 300) -> None:
    deadline = time.time() + limit
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.stdout.read()}"
        assert time.time() < deadline, f"no {what} within {limit} s"
        time.sleep(0.05)


def logged_step(run_dir: Path, step: int) -> bool:
    path = run_dir / "metrics.jsonl"
    return path.is_file() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines())


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Local-placement references: sync and async (max_staleness=1), same seed and settings."""
    root = tmp_path_factory.mktemp("local")
    return {
        k: train(tiny_config(root, f"name=local-{k}", *BASE, f"algo.max_staleness={k}"), quiet=True) for k in (0, 1)
    }


def test_ray_with_two_workers_and_two_learners_gives_the_local_numbers(tmp_path, local):
    run_dir = train(tiny_config(tmp_path, "name=ray", *BASE, *RAY), quiet=True)
    assert_same_metrics(local[0], run_dir)
    final = json.loads((run_dir / "summary.json").read_text())["after"]
    assert final == json.loads((local[0] / "summary.json").read_text())["after"]  # same held-out evaluation
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    pids = json.loads((run_dir / "actors.json").read_text())
    assert len(pids["rollout_workers"]) == 2 and len(pids["learners"]) == 2


def test_async_rollouts_learn_with_staleness_at_most_one(tmp_path, local):
    run_dir = train(tiny_config(tmp_path, "name=async", "steps=30", "algo.max_staleness=1", *RAY[:2]), quiet=True)
    rows = metrics_by_step(run_dir)
    staleness = [rows[s]["rollout/staleness"] for s in range(1, 31)]
    assert staleness == [0.0] + [1.0] * 29  # the first batch is sampled by the start policy, the rest one behind
    reward = [rows[s]["rollout/reward"] for s in range(1, 31)]
    first, last = sum(reward[:5]) / 5, sum(reward[-5:]) / 5
    assert last > first + 0.25, (first, last)  # the threshold of the algorithm tests (tests/e2e/test_algorithms.py)


def test_a_killed_rollout_actor_is_replaced_and_the_batch_is_the_same(tmp_path, local):
    proc = cli(*tiny_overrides(tmp_path, "name=killed-actor", *BASE, *RAY, *SLOW))
    run_dir = tmp_path / "runs" / "killed-actor"
    wait_for(lambda: logged_step(run_dir, 2), proc, "step 2")
    victim = json.loads((run_dir / "actors.json").read_text())["rollout_workers"][1]
    os.kill(victim, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"rollout worker 1 (pid {victim}) died" in out and "restarted it as pid" in out, out
    rows = metrics_by_step(run_dir)
    assert sum(r.get("placement/restarts", 0) for r in rows.values()) == 1
    assert all(r["rollout/dropped_groups"] == 0 for s, r in rows.items() if s)  # every batch full
    assert_same_metrics(local[0], run_dir)  # the replacement sampled the same share with the same seeds


def test_a_stalled_rollout_actor_is_named_and_replaced(tmp_path, local):
    marker = tmp_path / "stalled-once"
    stall = [
        f"rewards.components={{{TOYS}:stall_once: 1.0}}",
        f"rewards.options={{{TOYS}:stall_once: {{marker: '{marker}', seconds: 120}}}}",
        "rewards.timeout_s=300",
        "placement.stall_timeout_s=5",
    ]
    proc = cli(*tiny_overrides(tmp_path, "name=stalled", *BASE, *RAY, *stall))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert marker.exists()
    assert "made no progress for" in out and "in phase reward of step 1" in out and "restarted it" in out, out
    assert_same_metrics(local[0], tmp_path / "runs" / "stalled")


@pytest.mark.parametrize("staleness", [0, 1], ids=["sync", "async"])
def test_a_driver_killed_with_sigkill_resumes_to_the_same_numbers(tmp_path, local, staleness):
    at = random.Random(staleness).choice([2, 4])
    proc = cli(*tiny_overrides(tmp_path, "name=driver", *BASE, *RAY, *SLOW, f"algo.max_staleness={staleness}"))
    run_dir = tmp_path / "runs" / "driver"
    wait_for(lambda: (run_dir / "checkpoints" / f"step_{at:06d}").is_dir(), proc, f"checkpoint {at}")
    proc.kill()
    proc.communicate(timeout=60)
    assert read_state(run_dir)["state"] == "killed"
    resumed = cli("--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert_same_metrics(local[staleness], run_dir)


def test_a_dead_learner_rank_stops_the_run_with_its_checkpoints(tmp_path):
    proc = cli(*tiny_overrides(tmp_path, "name=rank", *BASE, *RAY, *SLOW, "steps=40"))
    run_dir = tmp_path / "runs" / "rank"
    wait_for(lambda: (run_dir / "checkpoints" / "step_000002").is_dir(), proc, "checkpoint 2")
    os.kill(json.loads((run_dir / "actors.json").read_text())["learners"][1], signal.SIGKILL)
    out, _ = proc.communicate(timeout=180)  # no hang: the other rank is not left waiting in its all-reduce
    assert proc.returncode == 1, out
    assert "learner rank 1 failed in update" in out and "--resume" in out, out
    assert "Traceback" not in out, out
    assert read_state(run_dir)["state"] == "failed"
    assert (run_dir / "checkpoints" / "step_000002" / "trainer_state.json").is_file()


def test_actors_the_cluster_cannot_place_are_refused_not_awaited(tmp_path):
    """STRICT_SPREAD wants a node per actor; the local cluster has one: one line after the wait, nothing kept."""
    proc = cli(
        *tiny_overrides(tmp_path, "name=unplaced", *BASE, *RAY),
        "placement.strategy=STRICT_SPREAD",
        "placement.stall_timeout_s=5",
    )
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 2, out
    assert "could not place 4 bundles" in out and "strategy STRICT_SPREAD" in out, out
    assert "Traceback" not in out, out
    assert not (tmp_path / "runs" / "unplaced").exists()


@pytest.mark.gpu
def test_two_learners_on_two_gpus_give_the_local_numbers(tmp_path):
    """NCCL data parallelism: the learners ask Ray for a GPU each, the two rollout workers share a third one."""
    import torch

    if torch.cuda.device_count() < 3:
        pytest.skip("needs 3 CUDA devices")
    cuda = ["model.device=cuda", "placement.gpus_per_worker=0.5"]
    on_one = train(tiny_config(tmp_path, "name=local-gpu", *BASE, "model.device=cuda"), quiet=True)
    run_dir = train(tiny_config(tmp_path, "name=ray-gpu", *BASE, *RAY, *cuda), quiet=True)
    assert_same_metrics(on_one, run_dir, rel=1e-3)
