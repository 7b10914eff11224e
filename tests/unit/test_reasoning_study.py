"""experiments/reasoning_study.py: every arm runs, the report pools seeds and pairs arms on the same problems."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("reasoning_study", ROOT / "experiments" / "reasoning_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_stats_count_verified_false_and_padding_steps(study):
    texts = ["3 - 7 = -4\n-4 + 2 = -2\nAnswer: -2", "1 + 1 = 2\n3 - 7 = 5", "Answer: 4"]
    questions = ["Calculate 3 - 7 + 2."] * 3
    stats = study.step_stats(texts, questions)
    assert stats["with_step"] == pytest.approx(2 / 3)
    assert stats["steps_per_completion"] == pytest.approx(4 / 3)
    assert stats["false_steps"] == pytest.approx(1 / 4)
    assert stats["trivial_steps"] == pytest.approx(1 / 3)  # 1 + 1 = 2 uses no number of the problem
    # a partial sum carried into the next step uses a number of the problem: not padding
    carried = study.step_stats(["3 + 4 = 7\n7 + 4 = 11\nAnswer: 11"], ["Calculate 3 + 4 + 4."])
    assert carried["trivial_steps"] == 0.0 and carried["false_steps"] == 0.0
    # earlier results are grounded operands too (a sum of products); a claim on neither is padding
    legs = "3 cats have 3 * 4 = 12 legs\n2 ducks have 2 * 2 = 4 legs\n12 + 4 = 16\n5 + 5 = 10\nAnswer: 16"
    assert study.step_stats([legs], ["How many legs do 3 cats, 2 ducks have?"])["trivial_steps"] == 0.25


def test_gated_correct_needs_every_step_to_hold(study):
    from reasonrl.types import Example

    example = Example(id="x", prompt="Calculate 3 - 7 + 2.", answer="-2")
    assert study.gated_correct("3 - 7 = -4\n-4 + 2 = -2\nAnswer: -2", example) == 1.0
    assert study.gated_correct("3 - 7 = -3\n-3 + 1 = -2\nAnswer: -2", example) == 0.0
    assert study.gated_correct("Answer: -2", example) == 0.0  # no working: the gate stays shut
    assert study.gated_correct("3 - 7 = -4\nAnswer: 5", example) == 0.0


def test_paired_change_averages_seeds_per_problem(study):
    def run(values):
        return {"after": {"problems": {f"p{i}": [v, v] for i, v in enumerate(values)}}}

    base = [run([0, 0, 1, 1]), run([0, 1, 1, 1])]
    arm = [run([1, 0, 1, 1]), run([1, 1, 1, 1])]
    change = study.paired_change(arm, base, which=1)
    assert change["problems"] == 4 and change["mean"] == pytest.approx((1 + 0 + 0 + 0) / 4)  # p1: 0.5 both sides
    assert change["low"] < change["mean"] < change["high"]


def test_a_tiny_study_runs_every_kind_of_arm_and_writes_its_report(study, tmp_path, capsys):
    runs, out = tmp_path / "study", tmp_path / "docs" / "reasoning.md"
    overrides = [  # each arm keeps its own rewards
        o for o in tiny_overrides(tmp_path) if not o.startswith(("output_dir", "name", "rewards.components"))
    ]
    args = ["--families", "arith3", "--arms", "outcome,steps,gate,sft_rl", "--seeds", "2", "--steps", "2"]
    args += ["--runs", str(runs), "--out", str(out), "--quiet", *overrides, "log_rollouts_every=1"]
    study.main(args)
    report = out.read_text()
    for arm in ("outcome", "steps", "gate", "sft_rl"):
        assert f"| {arm} (" in report
        assert (runs / f"arith3-{arm}-seed1" / "summary.json").is_file()
    assert (runs / "arith3-sft_rl-seed0-sft" / "adapter").is_dir()
    summary = json.loads(out.with_suffix(".json").read_text())["arith3"]
    assert summary["outcome"]["seeds"] == 2 and "vs_outcome" not in summary["outcome"]
    for arm in ("outcome", "steps", "gate", "sft_rl"):  # every arm is scored by `correct`, rewarded or not
        assert summary[arm]["greedy"][0] is not None and summary[arm]["sampled"][0] is not None, arm
    assert summary["sft_rl"]["before"]["greedy"] is not None  # RL's start: the SFT run's final evaluation
    assert summary["sft_rl"]["vs_start"]["greedy"]["problems"] == 8 and "vs_start" not in summary["steps"]
    assert "sft_rl: after the SFT alone (where its RL starts)" in out.read_text()
    change = summary["steps"]["vs_outcome"]["greedy"]
    assert change["problems"] == 8 and math.isfinite(change["mean"])
    assert out.with_suffix(".svg").read_text().startswith("<svg")
    stamp = (runs / "arith3-outcome-seed0" / "summary.json").stat().st_mtime_ns
    out.write_text(f"# The verdict, by hand\n{study.MARK}\nold tables\n")
    study.main(args)  # finished runs are reused; the text above the mark is kept, the tables rewritten
    assert (runs / "arith3-outcome-seed0" / "summary.json").stat().st_mtime_ns == stamp
    kept = out.read_text()
    assert kept.startswith("# The verdict, by hand\n") and "old tables" not in kept and "| gate (" in kept
    sft_stamp = (runs / "arith3-sft_rl-seed0-sft" / "summary.json").stat().st_mtime_ns
    study.main([*args[:2], "--arms", "sft_rl,sft_steps", "--seeds", "1", *args[6:]])  # the SFT arms share one SFT
    assert (runs / "arith3-sft_rl-seed0-sft" / "summary.json").stat().st_mtime_ns == sft_stamp
    assert not (runs / "arith3-sft_steps-seed0-sft").exists() and (runs / "arith3-sft_steps-seed0").is_dir()
    both = json.loads(out.with_suffix(".json").read_text())["arith3"]
    assert both["sft_steps"]["before"] == both["sft_rl"]["before"] and both["sft_steps"]["sft"]
    assert "Base model: sampled -, greedy -" in out.read_text()  # no arm starts from the base model here
