"""A run's state.json (running, finished, stopped, failed, killed) and the stop-after-this-step signal handling."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reasonrl.rewards.compose import RewardError
from reasonrl.run import catch_stop_signals, describe_state, read_state, stop_requested, write_state
from reasonrl.train import train
from tests.helpers import tiny_config

FLAKY = str(Path(__file__).parents[1] / "toy_rewards.py") + ":flaky"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_each_state_reads_back_and_is_described_in_one_line(tmp_path):
    assert read_state(tmp_path) == {"state": "unknown"}
    assert describe_state(tmp_path).startswith("state: unknown")
    write_state(tmp_path, "running", command="train", step=3, steps=10)
    assert read_state(tmp_path)["state"] == "running"  # this process is alive
    assert describe_state(tmp_path) == f"state: running after step 3 of 10 (pid {os.getpid()})"
    write_state(tmp_path, "stopped", command="sft", step=3, steps=10, signal="SIGINT")
    assert describe_state(tmp_path) == (
        f"state: stopped after step 3 of 10 (SIGINT); continue with `reasonrl sft --resume {tmp_path}`"
    )
    write_state(tmp_path, "finished", command="train", step=10, steps=10)
    assert describe_state(tmp_path) == "state: finished (10 steps)"
    assert not list(tmp_path.glob(".*tmp*")), "a state write left a temporary file"


def test_a_running_state_whose_process_is_gone_reads_as_killed(tmp_path):
    pid = dead_pid()
    (tmp_path / "state.json").write_text(f'{{"state": "running", "pid": {pid}, "step": null, "steps": 5}}')
    assert read_state(tmp_path)["state"] == "killed"
    assert describe_state(tmp_path).startswith(f"state: killed before its first step (process {pid} ended")


def test_the_first_signal_asks_for_a_stop_and_the_second_aborts():
    before = signal.getsignal(signal.SIGTERM)
    with catch_stop_signals():
        assert stop_requested() is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop_requested() == signal.SIGTERM  # noted; nothing raised: the step goes on
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    assert stop_requested() is None


def test_a_run_that_fails_records_failed_with_its_error(tmp_path):
    cfg = tiny_config(tmp_path, "steps=3", f"rewards.components={{{FLAKY}: 1.0}}", "rewards.on_error=stop")
    with pytest.raises(RewardError):
        train(cfg, quiet=True)
    state = read_state(tmp_path / "runs" / "tiny")
    assert state["state"] == "failed", state
    assert "RewardError" in state["error"] and "reward bug" in state["error"], state
    assert state["command"] == "train" and state["steps"] == 3


def test_a_finished_run_records_finished(tmp_path):
    run_dir = train(tiny_config(tmp_path, "steps=2"), quiet=True)
    state = read_state(run_dir)
    assert (state["state"], state["step"], state["steps"]) == ("finished", 2, 2)
