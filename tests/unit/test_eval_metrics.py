"""pass@k and maj@k: against brute-force enumeration and hand-made votes; EvalResult from a tiny run, and
recomputing both estimators from its JSON; multi-task `reasonrl eval`."""

import itertools
import json
import math

import pytest

from reasonrl.cli import main
from reasonrl.config import load_config
from reasonrl.evaluate import (
    EvalResult,
    estimates,
    eval_task_names,
    format_overview,
    format_result,
    maj_at_k,
    majority_vote,
    pass_at_k,
)
from reasonrl.rewards.answers import canonical_answer, final_answer
from tests.helpers import tiny_overrides


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (the first c correct) that hold at least one correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 11))
def test_pass_at_k_matches_enumeration_over_all_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(10, 0, 4) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3 samples hold a correct one
    for n, c in [(1, 0), (1, 1), (4, 1), (7, 3), (200, 57)]:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n)
    # large n stays finite and matches the exact binomial form
    assert pass_at_k(200, 10, 100) == pytest.approx(1 - math.comb(190, 100) / math.comb(200, 100))
    # the plug-in 1 - (1 - c/n)^k underestimates
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5) and 1 - (1 - 1 / 4) ** 2 < 0.5


@pytest.mark.parametrize(
    "n, c, k, words", [(3, 1, 4, "n=3, k=4"), (5, 1, 0, "k=0"), (5, 6, 2, "c=6"), (5, -1, 2, "c=-1")]
)
def test_pass_at_k_rejects_impossible_counts(n, c, k, words):
    with pytest.raises(ValueError, match=words):
        pass_at_k(n, c, k)


def test_canonical_answer_and_final_answer():
    assert canonical_answer("**1,000.**") == canonical_answer("1000.0") == canonical_answer("$1000") == "1000"
    assert canonical_answer("0.5") == canonical_answer("1/2") == "1/2"
    assert canonical_answer("  Paris ") == canonical_answer("paris") == "paris"
    assert canonical_answer(None) is None and canonical_answer(" ** ") is None
    assert final_answer("7 + 6 = 13\nAnswer: 13") == "13"
    assert final_answer("so the total is\n42") == "42"  # lenient: a short last line
    assert final_answer("so the total is\n42", lenient=False) is None
    assert final_answer("3 + 2 is\n3 + 2 = 5") == "5"  # the line's last number, as `correct` tries
    assert final_answer("The capital is\nParis") == "Paris"
    assert final_answer("Answer: 3 + 2 = 5") == "3 + 2 = 5"  # an explicit answer is kept as written
    assert final_answer("") is None


@pytest.mark.parametrize(
    "text",
    [
        "7 + 6 = 13\nAnswer: 13",
        "so\n1 + 2 equals 3",
        "The capital is\nParis",
        "Math 101",
        "x" * 60 + " 4 then 5 and " + "y" * 50,
        "no answer here at all, just a long line of prose that goes on",
        "\\boxed{\\frac{1}{2}}",
        "",
    ],
)
def test_the_voted_answer_is_one_the_correct_reward_tries(text):
    from reasonrl.rewards.builtin import _candidates

    for lenient in (True, False):
        answer, candidates = final_answer(text, lenient), _candidates(text, lenient)
        assert answer in candidates if candidates else answer is None, (text, lenient, answer, candidates)


def test_majority_vote_counts_canonical_answers_and_skips_unparsable():
    answers = ["7", None, "8", "7.0", None, "8", "8"]
    assert majority_vote(answers, 7) == 2  # "8" three times beats 7 twice; Nones do not vote
    assert majority_vote(answers, 4) == 0  # first four: 7, None, 8, 7.0 -> 7 (two votes)
    assert majority_vote([None, None], 2) is None


def test_majority_vote_tie_goes_to_the_earliest_answer():
    assert majority_vote(["5", "6", "6", "5"], 4) == 0  # 5 and 6 tie, 5 came first
    assert majority_vote(["6", "5", "5", "6"], 4) == 0
    assert majority_vote([None, "b", "a"], 3) == 1


def test_maj_at_k_against_reference_and_against_verdicts():
    assert maj_at_k(["3", "4", "4"], "4", 3) == 1.0
    assert maj_at_k(["3", "4", "4"], "4.0", 1) == 0.0  # only the first answer votes
    assert maj_at_k(["3", "3", "4"], "4", 3) == 0.0
    assert maj_at_k([None, None, "4"], "4", 3) == 1.0  # one vote is a majority
    assert maj_at_k([None, None, "4"], "4", 2) == 0.0  # no vote: wrong
    assert maj_at_k(["5", "6", "6", "5"], "6", 4) == 0.0  # tie -> earliest (5)
    # with per-sample verdicts the winner's earliest sample decides; the reference is not used
    assert maj_at_k(["x", "y", "y"], None, 3, correct=[True, False, True]) == 0.0
    assert maj_at_k(["x", "y", "y"], None, 3, correct=[False, True, False]) == 1.0
    with pytest.raises(ValueError, match="k=4"):
        maj_at_k(["1", "2"], "1", 4)


def test_estimates_from_per_problem_rows():
    rows = [
        {"scored": 4, "correct": 2, "answer": "1", "scores": [1.0, 0.0, 1.0, 0.0], "answers": ["1", "2", "1", "2"]},
        {"scored": 4, "correct": 0, "answer": "1", "scores": [0.0] * 4, "answers": [None, "3", "3", None]},
        {"scored": 0, "correct": 0, "answer": None, "scores": [None] * 4, "answers": ["1"] * 4},
    ]
    pass_at, maj_at = estimates(rows, [1, 2, 4])
    assert pass_at == pytest.approx({"1": 0.25, "2": (1 - 1 / 6) / 2, "4": 0.5})
    assert maj_at == pytest.approx({"1": 0.5, "2": 0.5, "4": 0.5})  # tie 1/2 -> "1" (earliest), correct


def test_eval_task_names_and_config_checks(tmp_path):
    cfg = load_config(None, ["eval.tasks=[reasoning_gym:chain_sum, reasoning_gym:basic_arithmetic]"])
    assert eval_task_names(cfg) == ["reasoning_gym:basic_arithmetic", "reasoning_gym:chain_sum"]
    assert eval_task_names(cfg, ["reasoning_gym:gcd"]) == ["reasoning_gym:gcd"]
    with pytest.raises(ValueError, match="eval.k"):
        load_config(None, ["eval.k=[0, 2]"])
    with pytest.raises(ValueError, match="data file"):
        load_config(None, ["eval.tasks=[jsonl]"])


def test_eval_result_from_a_tiny_model_recomputes_from_json(tmp_path, capsys):
    target = tmp_path / "eval.json"
    main(
        [
            "eval",
            *tiny_overrides(
                tmp_path, "eval.samples=4", "eval.k=[1, 2, 4, 8]", "rewards.components={correct: 1.0, format: 0.1}"
            ),
            "--json",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    data = json.loads(target.read_text())
    result = EvalResult(**next(iter(data["tasks"].values())))
    assert set(result.pass_at_k) == set(result.maj_at_k) == {"1", "2", "4"}  # 8 > samples is skipped
    assert result.pass_at_k["1"] == pytest.approx(result.accuracy)
    assert (result.pass_at_k, result.maj_at_k) == estimates(result.per_problem, [1, 2, 4])
    row = result.per_problem[0]
    assert row["scored"] == 4 and len(row["answers"]) == 4 and row["correct"] == sum(s >= 1 for s in row["scores"])
    metrics = result.metrics("eval")
    assert {"eval/pass@1", "eval/pass@4", "eval/maj@4", "eval/accuracy"} <= set(metrics)
    assert "pass@1 (accuracy)" in out and "maj@4" in out and "mean length" in out
    assert "maj@1" in format_result(result) and "pass@4" in format_overview([result, result])


def test_eval_of_several_tasks_prints_a_table_each_and_writes_them_to_json(tmp_path, capsys):
    target = tmp_path / "eval.json"
    main(
        [
            "eval",
            *tiny_overrides(
                tmp_path,
                "eval.tasks=[reasoning_gym:chain_sum]",
                "task.train_size=32",
                "rewards.components={correct: 1.0, format: 0.1}",
            ),
            "--json",
            str(target),
        ]
    )
    out = capsys.readouterr().out
    data = json.loads(target.read_text())
    assert list(data["tasks"]) == ["jsonl", "reasoning_gym:chain_sum"] and data["model"] == "tiny:llama"
    for name, result in data["tasks"].items():
        assert result["task"] == name and result["problems"] == 8 and len(result["per_problem"]) == 8
        assert set(result["pass_at_k"]) == {"1", "2"} and set(result["maj_at_k"]) == {"1", "2"}
        assert f"{name}: 8 problems x 2 samples" in out
    assert out.count("pass@1 (accuracy)") == 2 and "task " in out  # two tables, then the overview
    main(
        [
            "eval",
            *tiny_overrides(tmp_path, "task.train_size=32"),
            "--tasks",
            "reasoning_gym:chain_sum",
            "--json",
            str(target),
        ]
    )
    assert list(json.loads(target.read_text())["tasks"]) == ["reasoning_gym:chain_sum"]


def test_training_logs_pass_and_maj_at_k_for_the_run_task_and_eval_tasks(tmp_path):
    from reasonrl.train import format_summary, train
    from tests.helpers import tiny_config

    cfg = tiny_config(
        tmp_path,
        "steps=2",
        "eval.every=1",
        "task.train_size=32",
        "rewards.components={correct: 1.0}",
        "eval.tasks=[reasoning_gym:chain_sum]",
    )
    run_dir = train(cfg, quiet=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    for row in rows:
        for key in (
            "eval/pass@1",
            "eval/pass@2",
            "eval/maj@2",
            "eval/reasoning_gym:chain_sum/pass@2",
            "eval/reasoning_gym:chain_sum/maj@2",
        ):
            assert key in row, (row["step"], key)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["after"]["pass_at_k"].keys() == {"1", "2"} and "before" in format_summary(summary)


def test_eval_progress_shows_accuracy_so_far_and_counts_what_the_full_scoring_counts(tmp_path):
    from reasonrl.engine import ENGINES, Completion
    from reasonrl.envs import make_environment
    from reasonrl.eval_progress import EvalProgress
    from reasonrl.evaluate import eval_sets, evaluate_run
    from reasonrl.model import load_policy

    lines: list[str] = []
    progress = EvalProgress(lines.append, "evaluating", every=0.0)
    progress.scorer = lambda i, c: None if i == 2 else c.token_ids == [1]  # problem 2: no reference
    groups = [[Completion([1], [0.0], True), Completion([2], [0.0], True)]] * 3
    progress(3, 4, groups)  # samples of problem 2 are not counted
    assert lines == [lines[0]] and "3/4 problems sampled, accuracy so far 0.50 (4 samples), 0 s" in lines[0]
    progress(4, 4, groups + [[Completion([1], [0.0], True)] * 2])  # done: counted, not printed
    assert len(lines) == 1 and progress.verdicts == [4, 6]

    overrides = tiny_overrides(
        tmp_path, "eval.samples=4", "rewards.components={correct: 1.0}", "engine.batch_size=8", "eval.greedy=false"
    )
    cfg = load_config(None, overrides)
    policy, tokenizer = load_policy(cfg.model, cfg.lora)
    engine = ENGINES.get(cfg.engine.name)(cfg.model, cfg.lora, cfg.engine, tokenizer, shared=policy)
    (_, examples), *_ = eval_sets(cfg)
    lines.clear()
    progress = EvalProgress(lines.append, "evaluating", every=0.0)
    result = evaluate_run(make_environment(cfg), engine, tokenizer, examples, cfg, report=progress)
    assert len(lines) == len(examples) // 2 - 1  # 2 problems x 4 samples per chunk; the last chunk is not shown
    assert progress.verdicts == [sum(p["correct"] for p in result.per_problem), len(examples) * 4]


def test_sampled_evaluations_also_decode_greedily_and_the_summary_pairs_both(tmp_path, capsys):
    from reasonrl.train import format_summary, train
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path, "steps=2", "rewards.components={correct: 1.0}")
    assert cfg.eval.temperature > 0 and cfg.eval.greedy
    run_dir = train(cfg, quiet=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    for side in ("before", "after"):
        greedy = summary[side]["greedy"]
        assert greedy["samples_per_problem"] == 1 and greedy["problems"] == summary[side]["problems"]
        assert greedy["per_problem"] is None  # kept in the checkpoint's evals, not in the summary
    assert set(summary["paired_greedy"]) >= {"mean_diff", "ci_low", "ci_high", "better", "worse"}
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "eval/greedy/accuracy" in rows[0] and "eval/greedy/accuracy" in rows[-1]
    table = format_summary(summary)
    assert "sampled" in table and "greedy" in table and "greedy accuracy" in table.splitlines()[-1]

    # The greedy pass is what `reasonrl eval eval.temperature=0 eval.samples=1` gives for the trained adapter.
    target = tmp_path / "greedy.json"
    capsys.readouterr()
    main(["eval", "--run", str(run_dir), "eval.temperature=0", "eval.samples=1", "--json", str(target)])
    alone = next(iter(json.loads(target.read_text())["tasks"].values()))
    assert alone["accuracy"] == summary["after"]["greedy"]["accuracy"]
    assert alone["mean_length"] == summary["after"]["greedy"]["mean_length"]
    assert "greedy accuracy" not in capsys.readouterr().out  # greedy already: no second pass

    target = tmp_path / "off.json"
    main(["eval", *tiny_overrides(tmp_path, "eval.greedy=false"), "--json", str(target)])
    assert next(iter(json.loads(target.read_text())["tasks"].values()))["greedy"] is None
    main(["eval", *tiny_overrides(tmp_path, "rewards.components={correct: 1.0}"), "--json", str(target)])
    assert "greedy accuracy" in capsys.readouterr().out
