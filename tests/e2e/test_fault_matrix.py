"""kill -9 at 20 moments drawn at random (seeded) from five phases of a run: inside generation (a decode step),
while reward calls are in flight in the workers, inside the update (gradients computed, optimizer step not
taken), with a checkpoint half written, and after a step's metrics are logged but before its checkpoint.

After each kill: the run directory is readable (config, state 'killed', every metrics line but a torn last
one, only complete checkpoints under step_*), no reward worker outlives the trainer, and `--resume` finishes
the run with per-step metrics equal to an uninterrupted run's. The moments are fault points
(reasonrl/utils/faults.py: REASONRL_FAULT=<phase>:<n> SIGKILLs the trainer the n-th time it gets there).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reasonrl.run import read_state
from reasonrl.train import train
from tests.e2e.test_resume import metrics_by_step
from tests.helpers import tiny_config, tiny_overrides

ROOT = Path(__file__).parents[2]
RUN = ["steps=5", "save_every=2", "algo.kl.coef=0.02", "eval.before=always"]  # always: the hit counts below
HITS = {"generate": 68, "reward": 112, "update": 10, "checkpoint": 3, "metrics": 5}
"""How many times an uninterrupted run of RUN reaches each phase (counted with REASONRL_FAULT=<phase>:0)."""
PER_PHASE = {"generate": 5, "reward": 5, "update": 4, "checkpoint": 3, "metrics": 3}
_rng = random.Random(2026)
MOMENTS = [(phase, hit) for phase, k in PER_PHASE.items() for hit in sorted(_rng.sample(range(1, HITS[phase] + 1), k))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return metrics_by_step(train(tiny_config(tmp_path_factory.mktemp("reference"), "name=straight", *RUN), quiet=True))


def cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REASONRL_FAULT", None)
    if fault:
        env["REASONRL_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "reasonrl.cli", "train", *args, "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def reward_workers() -> list[int]:
    """pids of reward worker processes on this machine (found by their command line: a worker that outlived
    its trainer is reparented, so its parent pid says nothing)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"reasonrl_reward_worker" in cmd and entry.name != str(os.getpid()):
                found.append(int(entry.name))
    return found


def check_readable(run_dir: Path) -> None:
    yaml.safe_load((run_dir / "config.yaml").read_text())
    assert read_state(run_dir)["state"] == "killed", read_state(run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    for line in lines[:-1]:
        json.loads(line)
    for ckpt in (run_dir / "checkpoints").glob("step_*") if (run_dir / "checkpoints").exists() else []:
        assert (ckpt / "trainer_state.json").is_file() and (ckpt / "rng.pt").is_file(), ckpt


@pytest.mark.slow
@pytest.mark.parametrize("phase,hit", MOMENTS, ids=[f"{p}:{n}" for p, n in MOMENTS])
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, reference, phase, hit):
    before = set(reward_workers())
    killed = cli(*tiny_overrides(tmp_path, "name=faulty", *RUN), fault=f"{phase}:{hit}")
    assert killed.returncode == -signal.SIGKILL, f"not killed at {phase}:{hit}:\n{killed.stdout}{killed.stderr}"
    run_dir = tmp_path / "runs" / "faulty"
    check_readable(run_dir)
    deadline = time.time() + 10
    while set(reward_workers()) - before and time.time() < deadline:
        time.sleep(0.1)  # the kernel kills orphaned workers (PR_SET_PDEATHSIG); give it a moment
    assert not set(reward_workers()) - before, "a reward worker outlived the killed trainer"

    resumed = cli("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got = metrics_by_step(run_dir)
    assert sorted(got) == sorted(reference), (sorted(got), sorted(reference))
    for step, want in reference.items():
        assert got[step].keys() == want.keys(), step
        for key, value in want.items():
            assert got[step][key] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, key)
