"""`reasonrl sweep` on Optuna: trials are runs, a bad trial is pruned, a crashing one is recorded as failed, and a
sweep killed with -9 resumes without losing or repeating a trial."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrl.cli import main
from tests.helpers import TOY_REWARD, tiny_overrides

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).parents[2]


def space_file(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def overrides(tmp_path, *extra):
    return tiny_overrides(tmp_path, "steps=4", "eval.every=2", "eval.samples=2", "eval.temperature=1.0", *extra)


def load_trials(tmp_path):
    return json.loads((tmp_path / "runs" / "tiny-sweep" / "trials.json").read_text())["trials"]


def test_a_bad_trial_is_pruned_and_a_crashing_one_recorded_as_failed(tmp_path, capsys):
    good, bad = {TOY_REWARD: 1.0}, {TOY_REWARD: 0.1}  # a tenth of the reward: below the others at the first eval
    space = space_file(
        tmp_path,
        json.dumps(
            {
                "objective": "eval/mean_reward",
                "params": {
                    "rewards.components": {"type": "categorical", "choices": [good, bad]},
                    "model.path": {"type": "categorical", "choices": ["tiny:llama", "/no/such/model"]},
                },
                "enqueue": [
                    {"rewards.components": good, "model.path": "tiny:llama"},
                    {"rewards.components": good, "model.path": "tiny:llama"},
                    {"rewards.components": bad, "model.path": "tiny:llama"},
                    {"rewards.components": good, "model.path": "/no/such/model"},
                ],
            }
        ),
    )
    main(["sweep", *overrides(tmp_path), "--space", space, "--trials", "4", "--quiet"])
    trials = {t["number"]: t for t in load_trials(tmp_path)}
    assert [trials[n]["state"] for n in range(4)] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert trials[2]["params"] == {"rewards.components": bad, "model.path": "tiny:llama"}  # a dict choice, decoded
    # stopped at its first evaluation (step 2), below the median of the two complete trials there
    assert trials[2]["note"].startswith("pruned by the sweep: eval/mean_reward") and list(
        trials[2]["intermediate"]
    ) == ["2"]
    assert "model.path '/no/such/model': no config.json" in trials[3]["note"]  # the run's error; the sweep went on
    summary = json.loads((Path(trials[0]["run_dir"]) / "summary.json").read_text())
    assert trials[0]["value"] == pytest.approx(summary["after"]["mean_reward"])  # the objective at the last eval
    assert "tiny-sweep: 4 trials, eval/mean_reward (maximize), best first" in capsys.readouterr().out


def test_bad_spaces_get_one_line_and_write_nothing(tmp_path, capsys):
    cases = [
        ("params: {optim.lrr: {type: float, low: 0.1, high: 0.2}}", "params.optim.lrr: unknown config key"),
        ("params: {optim.lr: {type: float, low: 0.1}}", "params.optim.lr (float) needs high, low"),
        ("params: {lora.rank: {type: categorical, choices: [4, many]}}", "params.lora.rank: lora.rank"),
        ("params: {optim.lr: {type: uniform, low: 0.1, high: 0.2}}", "give type: float, int or categorical"),
        ("objective: eval/accuracy", "expected a mapping with params"),
    ]
    for text, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["sweep", *overrides(tmp_path), "--space", space_file(tmp_path, text)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err, (text, err)
    assert not (tmp_path / "runs").exists()


def test_a_sweep_killed_with_minus_9_resumes_without_losing_or_repeating_a_trial(tmp_path):
    space = space_file(
        tmp_path, "objective: eval/mean_reward\nparams:\n  optim.lr: {type: float, low: 1.0e-4, high: 1.0e-3}\n"
    )
    args = ["sweep", *overrides(tmp_path, "steps=6", "save_every=1"), "--space", space, "--trials", "3", "--quiet"]
    code = f"import sys; from reasonrl.cli import main; main({args!r})"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    second = tmp_path / "runs" / "tiny-sweep" / "trials" / "trial_001" / "checkpoints"
    deadline = time.time() + 240
    while not (second.is_dir() and any(second.glob("step_*"))) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # trial 1 is half-way: RUNNING in the study, a checkpoint on disk
    proc.wait()
    study = optuna.load_study(study_name="tiny-sweep", storage=f"sqlite:///{tmp_path / 'runs/tiny-sweep/sweep.db'}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "RUNNING"]
    main(args + ["--resume"])
    trials = sorted(load_trials(tmp_path), key=lambda t: t["number"])
    assert [(t["number"], t["state"]) for t in trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    runs = sorted(p.name for p in (tmp_path / "runs" / "tiny-sweep" / "trials").iterdir())
    assert runs == ["trial_000", "trial_001", "trial_002"]  # no trial run twice under another number
    steps = [json.loads(x)["step"] for x in (Path(trials[1]["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4, 5, 6]  # trial 1 resumed from its checkpoint: each step logged once
    with pytest.raises(SystemExit):  # a finished sweep name is not silently reused
        main(args)


def test_the_shipped_sweep_spaces_fit_their_recipe():
    from reasonrl.config import load_config
    from reasonrl.sweep import load_space

    for space in sorted((ROOT / "recipes" / "sweeps").glob("*.yaml")):
        loaded = load_space(str(space), load_config(ROOT / "recipes" / "quickstart.yaml"))
        assert loaded.params and all(set(row) <= set(loaded.params) for row in loaded.enqueue), space


def test_a_trial_past_the_kl_budget_is_stopped(tmp_path):
    space = space_file(
        tmp_path,
        "objective: eval/mean_reward\nkl_budget: 1.0e-9\nparams:\n  optim.lr: {type: categorical, choices: [0.01]}\n",
    )
    forget = ["forget.enabled=true", "forget.kl_prompts=2", "forget.kl_samples=2", "forget.text=null"]
    main(["sweep", *overrides(tmp_path, *forget), "--space", space, "--trials", "1", "--quiet"])
    (trial,) = load_trials(tmp_path)
    assert trial["state"] == "PRUNED" and trial["note"].startswith("pruned by the sweep: forget/kl_forward")
    assert "> kl_budget 1e-09" in trial["note"]
    with pytest.raises(SystemExit):  # the budget needs the monitor that measures it
        main(["sweep", *overrides(tmp_path), "--space", space, "--trials", "1", "--name", "other"])


def test_whose_trial_is_still_running():
    import socket

    from reasonrl.sweep import owner_alive

    here = socket.gethostname()
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not owner_alive({"host": here})  # killed before it recorded its pid: not -1, which is every process
    assert not owner_alive({"host": here, "pid": int(done.stdout)})  # exited
    assert owner_alive({"host": here, "pid": os.getppid()}) and owner_alive({"host": "elsewhere", "pid": 1})
