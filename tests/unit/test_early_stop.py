"""eval.early_stop and evaluation watchers: a run stops at an evaluation with the reason recorded, keeps the best
adapter, and a bad metric name fails with the names that are logged."""

import json

import pytest

from reasonrl.config import load_config
from reasonrl.config.optim import EarlyStopConfig
from reasonrl.early_stop import EarlyStop
from reasonrl.train import train
from tests.helpers import tiny_overrides


def test_patience_counts_evaluations_without_improvement(tmp_path):
    stopper = EarlyStop(EarlyStopConfig(metric="eval/accuracy", patience=2, min_delta=0.05), tmp_path, None)
    seen = [stopper.watch(s, {"eval/accuracy": v}) for s, v in [(1, 0.5), (2, 0.54), (3, 0.6), (4, 0.6), (5, 0.64)]]
    assert seen[:4] == [None] * 4 and seen[4] == (
        "early stop: eval/accuracy did not improve by more than 0.05 for 2 evaluations (best 0.6 at step 3)"
    )  # 0.54 is not 0.05 better than 0.5, 0.6 is; then 0.6 and 0.64 are not
    low = EarlyStop(EarlyStopConfig(metric="eval/mean_length", patience=1, mode="min"), tmp_path, None)
    assert low.watch(1, {"eval/mean_length": 9.0}) is None and low.watch(2, {"eval/mean_length": 8.0}) is None
    assert low.watch(3, {"eval/mean_length": 8.5}) is not None and low.summary()["best"] == 8.0
    with pytest.raises(ValueError, match=r"'eval/acc' is not logged at evaluations; logged: eval/accuracy"):
        EarlyStop(EarlyStopConfig(metric="eval/acc"), tmp_path, None).watch(1, {"eval/accuracy": 0.5})
    with pytest.raises(ValueError, match="needs evaluations during the run: set eval.every"):
        load_config(None, ["eval.early_stop.metric=eval/accuracy"])


def test_a_run_stops_early_and_keeps_the_best_adapter(tmp_path):
    # lr 0: the policy never changes, so eval/mean_reward (same seed every evaluation) never improves
    overrides = ["steps=10", "eval.every=1", "optim.lr=0", "eval.early_stop.metric=eval/mean_reward"]
    cfg = load_config(None, tiny_overrides(tmp_path, *overrides, "eval.early_stop.patience=2"))
    run_dir = train(cfg, quiet=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["stopped_early"].startswith("early stop: eval/mean_reward did not")
    assert summary["early_stop"] == {
        "metric": "eval/mean_reward",
        "best": summary["after"]["mean_reward"],
        "step": 1,
        "adapter": "adapter_best",
    }
    assert (run_dir / "adapter_best" / "adapter_config.json").is_file() and (run_dir / "adapter").is_dir()
    assert json.loads((run_dir / "state.json").read_text())["state"] == "finished"
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]


def test_a_watcher_stops_a_run_at_an_evaluation(tmp_path):
    calls = []

    def prune(step, metrics):
        calls.append(step)
        return "pruned by the sweep" if step == 4 else None

    cfg = load_config(None, tiny_overrides(tmp_path, "steps=8", "eval.every=2"))
    summary = json.loads((train(cfg, quiet=True, watchers=[prune]) / "summary.json").read_text())
    assert calls == [2, 4] and summary["steps"] == 4 and summary["stopped_early"] == "pruned by the sweep"
