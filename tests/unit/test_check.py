"""`reasonrl train --check`: config, task, rewards on reference answers and an estimate; nothing trained or written."""

import json

import pytest

from reasonrl.cli import main
from tests.helpers import tiny_overrides


def test_check_prints_examples_rewards_and_an_estimate_and_writes_nothing(capsys, tmp_path):
    main(["train", "--check", *tiny_overrides(tmp_path, "rewards.components={correct: 1.0, format: 0.1}")])
    out = capsys.readouterr().out
    assert "config: ok" in out and "task: 32 train and 8 held-out problems" in out
    assert out.count("-> answer") == 3 and out.count("correct 1.00, format 1.00") == 3
    assert "estimate per step" in out and "memory: the plan" in out and "check passed" in out
    assert not (tmp_path / "runs").exists()


def test_a_reward_that_disagrees_with_the_answers_fails_the_check(capsys, tmp_path):
    words = tmp_path / "words.jsonl"
    words.write_text(
        "".join(
            json.dumps({"prompt": f"spell {i}", "answer": w}) + "\n"
            for i, w in enumerate(["one", "two", "three", "four", "five", "six"] * 4)
        )
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--check", *tiny_overrides(tmp_path, f"task.path={words}", "rewards.components={numeric: 1.0}")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "reward 'numeric' gives no score (n/a) to any reference answer" in err
    assert not (tmp_path / "runs").exists()


def test_a_broken_config_fails_as_a_run_would(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--check", *tiny_overrides(tmp_path, "algo.advantage=grpx")])
    assert exit_info.value.code == 2 and "did you mean 'grpo'" in capsys.readouterr().err


def test_a_format_the_references_do_not_follow_fails_the_check(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "train",
                "--check",
                *tiny_overrides(
                    tmp_path,
                    "rewards.components={correct: 1.0, format: 0.1}",
                    "rewards.options={format: {pattern: '<answer>'}}",
                ),
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "format below 1" in err and "'Answer: " in err
