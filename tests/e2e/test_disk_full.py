"""A disk that fills up during a run: one error line, exit 1, the checkpoints written before intact and loadable,
no half-written one left, and --resume finishes the run once there is space again.

On a machine where the test can mount a small tmpfs (a user and mount namespace: `unshare -r -m`) the run
writes to a real full filesystem; everywhere the same run gets an injected ENOSPC in torch.save, which is how
a full disk reaches a checkpoint writer (torch raises RuntimeError without an errno)."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasonrl import cli
from reasonrl.run import read_state
from tests.helpers import tiny_overrides

ROOT = Path(__file__).parents[2]
RUN = ["steps=6", "save_every=2", "log_rollouts_every=0"]


def can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "-r", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"], capture_output=True
    )
    return done.returncode == 0


def check_after_the_failure(run_dir: Path, output: str, returncode: int) -> None:
    assert returncode == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on the device"), output
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "step_000002" / "trainer_state.json").is_file(), sorted(p.name for p in ckpts.iterdir())
    assert not [p.name for p in ckpts.iterdir() if p.name.startswith(".")], "a half-written checkpoint was left"
    assert read_state(run_dir)["state"] in ("failed", "killed")  # readable; 'killed' if even state.json failed
    for line in (run_dir / "metrics.jsonl").read_text().splitlines()[:-1]:
        json.loads(line)  # every line but a torn last one parses


def check_resumed(run_dir: Path) -> None:
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(7)), steps
    assert read_state(run_dir)["state"] == "finished"


@pytest.mark.slow
def test_a_real_full_disk_stops_the_run_cleanly_and_resume_finishes_it(tmp_path):
    if not can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs here (no user namespaces); the injected-ENOSPC test covers this")
    runs = tmp_path / "runs"
    runs.mkdir()
    python = f"{sys.executable} -m reasonrl.cli train"
    overrides = shlex.join(tiny_overrides(tmp_path, f"output_dir={runs}", *RUN))
    # 300 KiB: room for config, metrics and the step-2 checkpoint (~150 KiB), not for the step-4 one.
    script = (
        f"mount -t tmpfs -o size=300k tmpfs {runs} || exit 99; "
        f"{python} {overrides} --quiet > {tmp_path}/first.txt 2>&1; echo $? > {tmp_path}/first.rc; "
        f"cp -a {runs}/tiny {tmp_path}/after_full; "
        f"mount -o remount,size=20m {runs}; "
        f"{python} --resume {runs}/tiny --quiet > {tmp_path}/second.txt 2>&1; echo $? > {tmp_path}/second.rc; "
        f"cp -a {runs}/tiny {tmp_path}/resumed"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done
    first = (tmp_path / "first.txt").read_text()
    check_after_the_failure(tmp_path / "after_full", first, int((tmp_path / "first.rc").read_text()))
    assert int((tmp_path / "second.rc").read_text()) == 0, (tmp_path / "second.txt").read_text()
    check_resumed(tmp_path / "resumed")


@pytest.mark.slow
def test_an_injected_enospc_in_a_checkpoint_stops_the_run_cleanly_and_resume_finishes_it(tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # the step-4 checkpoint's optimizer state meets a full disk
        if "step_000004" in str(f) and str(f).endswith("optim.pt"):
            Path(f).write_bytes(b"half")
            monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, 1 << 30, 0))
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *tiny_overrides(tmp_path, *RUN), "--quiet"])
    run_dir = tmp_path / "runs" / "tiny"
    output = capsys.readouterr()
    check_after_the_failure(run_dir, output.err, exit_info.value.code)
    monkeypatch.undo()
    cli.main(["train", "--resume", str(run_dir), "--quiet"])  # returns: exit 0
    check_resumed(run_dir)
