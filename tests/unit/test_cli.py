"""The CLI: clear one-line errors with exit status 2 and nothing written; list, eval, reward failures."""

import json
from pathlib import Path

import pytest

from reasonrl.cli import main
from tests.helpers import tiny_overrides, toy_task


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    "override, message",
    [
        ("algo.kl.coeff=0.1", "unknown config key 'algo.kl.coeff'; did you mean 'algo.kl.coef'?"),
        ("lora.rank=big", "lora.rank: expected int, got str 'big'"),
        ("model.path=/no/such/model", "model.path '/no/such/model': no config.json"),
        ("task.name=reasoning_gym:basic_arithmetc", "unknown reasoning-gym dataset 'basic_arithmetc'"),
        ("rewards.components={nope: 1.0}", "nope"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(capsys, tmp_path, override, message):
    code, out, err = run_cli(capsys, "train", *tiny_overrides(tmp_path, override))
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists(), "nothing may be written for a rejected config"


def test_malformed_jsonl_names_file_and_line(capsys, tmp_path):
    lines = toy_task(tmp_path).read_text().splitlines()
    lines[4] = '{"prompt": "say 4", "answer": '
    data = tmp_path / "broken.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "train", *tiny_overrides(tmp_path, f"task.path={data}"))
    assert code == 2 and f"{data}:5:" in err


def test_existing_run_dir_needs_resume_or_overwrite(capsys, tmp_path):
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    code, _, err = run_cli(capsys, "train", *tiny_overrides(tmp_path))
    assert code == 2 and "--resume" in err and "--overwrite" in err


def test_overrides_after_a_flag_are_overrides(capsys, tmp_path):
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    first, *rest = tiny_overrides(tmp_path, "lora.rank=big")
    code, _, err = run_cli(capsys, "train", first, "--overwrite", *rest)  # rest reached the config, not argparse
    assert code == 2 and "lora.rank: expected int" in err
    code, _, err = run_cli(capsys, "train", first, "--nope", *rest)
    assert code == 2 and "unrecognized arguments: --nope" in err


def test_list_shows_every_registry(capsys):
    main(["list"])
    out = capsys.readouterr().out
    for word in ("grpo", "ppo_clip", "k3", "correct", "format", "hf", "single_turn", "basic_arithmetic"):
        assert word in out


def test_eval_prints_accuracy_and_writes_json(capsys, tmp_path):
    target = tmp_path / "eval.json"
    main(["eval", *tiny_overrides(tmp_path, "rewards.components={correct: 1.0, format: 0.1}"), "--json", str(target)])
    out = capsys.readouterr().out
    assert "accuracy" in out and "mean length" in out and "maj@2" in out
    result = json.loads(target.read_text())["tasks"]["jsonl"]
    assert result["problems"] == 8 and len(result["per_problem"]) == 8


def test_failing_reward_is_logged_and_scored_zero_without_killing_the_run(capsys, tmp_path, caplog):
    flaky = str(Path(__file__).parents[1] / "toy_rewards.py") + ":flaky"
    main(["train", *tiny_overrides(tmp_path, "steps=2", f"rewards.components={{{flaky}: 1.0}}"), "--quiet"])
    rows = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and any(r.get("rollout/reward_errors", 0) > 0 for r in rows)
    rollouts = (tmp_path / "runs" / "tiny" / "rollouts" / "step_000001.jsonl").read_text().splitlines()
    errored = [json.loads(r) for r in rollouts if json.loads(r)["errors"]]
    assert errored and all(r["reward"] == 0.0 and "reward bug" in r["errors"][0] for r in errored)


def test_failing_reward_can_stop_the_run(capsys, tmp_path):
    flaky = str(Path(__file__).parents[1] / "toy_rewards.py") + ":flaky"
    code, _, err = run_cli(
        capsys,
        "train",
        *tiny_overrides(tmp_path, "steps=2", f"rewards.components={{{flaky}: 1.0}}", "rewards.on_error=stop"),
        "--quiet",
    )
    assert code == 1 and "reward bug" in err and "rewards.on_error" in err
