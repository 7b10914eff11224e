"""`reasonrl seeds` and the statistics it prints (reasonrl/stats.py), against hand and table values."""

import json
import math

import pytest

from reasonrl.cli import main
from reasonrl.stats import incomplete_beta, mean_interval, paired_t_test, t_cdf, t_quantile
from tests.helpers import tiny_overrides


@pytest.mark.parametrize(
    "p, df, t",  # Student's t table
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 10, 2.228), (0.95, 30, 1.697)],
)
def test_t_quantiles_match_the_table(p, df, t):
    assert t_quantile(p, df) == pytest.approx(t, abs=1e-3)


def test_t_cdf_and_incomplete_beta_against_closed_forms():
    for x in (0.1, 0.5, 0.9):  # I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 - (1 - x)^b
        assert incomplete_beta(1, 1, x) == pytest.approx(x)
        assert incomplete_beta(3, 1, x) == pytest.approx(x**3)
        assert incomplete_beta(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5)
    for t in (-3.0, -0.7, 0.0, 0.4, 2.5):  # df = 1 is Cauchy: 1/2 + atan(t)/pi; df = 2: 1/2 + t / (2 sqrt(2 + t^2))
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_mean_interval_and_paired_t_test_by_hand():
    mean, low, high = mean_interval([0.58, 0.62, 0.70])
    half = 4.302653 * math.sqrt(((0.58 - 0.6333) ** 2 + (0.62 - 0.6333) ** 2 + (0.70 - 0.6333) ** 2) / 2) / math.sqrt(3)
    assert mean == pytest.approx(0.63333, abs=1e-5) and high - mean == pytest.approx(half, abs=1e-4)
    assert mean - low == pytest.approx(high - mean)
    t, p = paired_t_test([0.5, 0.6, 0.55], [0.6, 0.65, 0.6])  # changes 0.1, 0.05, 0.05: mean 1/15, sd 1/(20 sqrt 3)
    assert t == pytest.approx(4.0) and p == pytest.approx(1 - t_cdf(4.0, 2)) and p == pytest.approx(0.02860, abs=1e-4)
    assert math.isnan(mean_interval([0.5])[1]) and paired_t_test([0.1, 0.2], [0.2, 0.3])[1] == 0.0


def test_seeds_repeat_exactly_and_differ_across_seeds(tmp_path, capsys):
    def seeds(out, *extra):
        out.mkdir(exist_ok=True)
        overrides = tiny_overrides(out, "steps=2", "eval.samples=2", "eval.temperature=1.0")
        main(["seeds", *overrides, "--n", "2", "--quiet", "--metric", "mean_reward", *extra])
        return json.loads((out / "runs" / "tiny-seeds.json").read_text())

    first = seeds(tmp_path / "a")
    out = capsys.readouterr().out
    assert "held-out mean reward over 2 seeds" in out and "paired t-test of after > before" in out
    assert [r["run"] for r in first["seeds"]] == ["tiny-seed0", "tiny-seed1"]
    assert seeds(tmp_path / "b") == first  # the same seeds in a fresh place: the same numbers
    runs = tmp_path / "a" / "runs"
    metrics = [(runs / f"tiny-seed{s}" / "metrics.jsonl").read_text().splitlines() for s in (0, 1)]
    assert metrics[0][1] != metrics[1][1]  # step 1 differs across seeds (prompts, adapter, samples)
    (runs / "tiny-seed1" / "summary.json").unlink()  # an unfinished seed is resumed, a finished one reused
    assert seeds(tmp_path / "a") == first


def test_bad_seed_requests_get_one_line(tmp_path, capsys):
    for args, message in [
        (["--n", "0"], "error: --n 0: give at least 1 seed"),
        (["--metric", "loss"], "error: --metric 'loss': one of accuracy, mean_reward"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["seeds", *tiny_overrides(tmp_path, "steps=1"), *args])
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_greedy_accuracy_beside_the_sampled_one(tmp_path, capsys):
    # eval.greedy (on by default) measured greedy accuracy in each run: the table reads it from the summaries.
    args = tiny_overrides(tmp_path, "steps=2", "eval.samples=2", "eval.temperature=1.0")
    args += ["rewards.components={correct: 1.0}", "--n", "2", "--quiet"]
    main(["seeds", *args])
    table = json.loads((tmp_path / "runs" / "tiny-seeds.json").read_text())
    greedy = table["greedy"]
    assert "held-out greedy accuracy over 2 seeds" in capsys.readouterr().out
    assert [r["greedy_before"] for r in greedy["seeds"]] == [greedy["seeds"][0]["before"]] * 2  # one base value
    assert not (tmp_path / "runs" / "tiny-seed0" / "greedy.json").exists()

    # Runs without it (eval.greedy=false): --greedy evaluates the start model and each adapter afterwards, and
    # gets the numbers the runs' own greedy pass got (the same seeds train the same adapters).
    off = tmp_path / "off"
    args = [a.replace(str(tmp_path / "runs"), str(off)) for a in args] + ["eval.greedy=false", "--greedy"]
    main(["seeds", *args])
    again = json.loads((off / "tiny-seeds.json").read_text())["greedy"]
    assert [(r["before"], r["after"]) for r in again["seeds"]] == [(r["before"], r["after"]) for r in greedy["seeds"]]
    cached = [off / f"tiny-seed{s}" / "greedy.json" for s in (0, 1)]
    assert [json.loads(c.read_text())["after"] for c in cached] == [r["after"] for r in again["seeds"]]
    stamps = [c.stat().st_mtime_ns for c in cached]
    main(["seeds", *args])  # finished seeds and their greedy scores are reused
    assert [c.stat().st_mtime_ns for c in cached] == stamps


def test_pooled_change_pairs_problems_and_averages_seeds():
    from reasonrl.seeds import pooled_change

    seed0 = {"id": ["a", "b", "c"], "before": [0, 0, 1], "after": [1, 0, 1]}
    seed1 = {"id": ["c", "b", "a"], "before": [1, 0, 0], "after": [0, 1, 1]}  # another order: matched by id
    pooled = pooled_change([seed0, seed1])
    # per problem, after - before averaged over seeds: a (1 + 1) / 2 = 1, b (0 + 1) / 2 = 0.5, c (0 - 1) / 2 = -0.5
    assert pooled["problems"] == 3 and pooled["mean"] == pytest.approx(1 / 3)
    assert (pooled["better"], pooled["worse"]) == (2, 1)
    sd = ((2 / 3) ** 2 + (1 / 6) ** 2 + (5 / 6) ** 2) ** 0.5 / 2**0.5
    assert pooled["t"] == pytest.approx((1 / 3) / (sd / 3**0.5))
    assert pooled_change([seed0, None]) is None  # a seed without per-problem rows: nothing pooled
    assert pooled_change([seed0], "greedy_") is None


def test_seeds_pool_the_per_problem_changes_of_the_summaries(tmp_path, capsys):
    args = tiny_overrides(tmp_path, "steps=2", "rewards.components={correct: 1.0}") + ["--n", "2", "--quiet"]
    main(["seeds", *args])
    table = json.loads((tmp_path / "runs" / "tiny-seeds.json").read_text())
    summaries = [json.loads((tmp_path / "runs" / f"tiny-seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    from reasonrl.seeds import pooled_change

    assert table["pooled"] == pooled_change([s["problems"] for s in summaries])
    assert table["greedy"]["pooled"] == pooled_change([s["problems"] for s in summaries], "greedy_")
    assert table["pooled"]["problems"] == 8
    assert "paired over 8 problems, pooled over seeds" in capsys.readouterr().out
