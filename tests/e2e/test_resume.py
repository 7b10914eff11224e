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

from reasonrl.train import train
from tests.helpers import tiny_config, tiny_overrides

ROOT = Path(__file__).parents[2]


def metrics_by_step(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"duplicate or unordered steps: {steps}"
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("time/")} for r in rows}


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "reasonrl.cli", "train", *args, "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    extra = ["steps=12", "save_every=3", "algo.kl.coef=0.02", "optim.schedule=cosine", "optim.warmup_steps=2"]
    reference_dir = train(tiny_config(tmp_path, "name=straight", *extra), quiet=True)

    proc = cli(*tiny_overrides(tmp_path, "name=killed", *extra))
    ckpts = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 120
    while not (ckpts / "step_000003").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_dir = tmp_path / "runs" / "killed"
    assert max(metrics_by_step(killed_dir)) < 12, "the run finished before it was killed"
    assert not any(p.name.startswith(".tmp") and (p / "trainer_state.json").exists() for p in ckpts.iterdir())
    resumed = cli("--resume", str(killed_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out

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
