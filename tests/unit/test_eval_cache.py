"""eval.before: the start model's evaluation is cached by (model, task, eval settings, rewards, seed, ...) and
reused by later runs (auto), recomputed (always) or left out (skip); a reused one changes no number."""

import json

from reasonrl import eval_cache
from reasonrl.train import train
from tests.helpers import tiny_config


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "memory/"))} for r in rows]


def test_a_second_run_reuses_the_start_evaluation_and_trains_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REASONRL_EVAL_CACHE", str(tmp_path / "evals"))
    first = train(tiny_config(tmp_path, "name=first", "steps=3"), quiet=True)
    cfg = tiny_config(tmp_path, "name=second", "steps=3")
    assert eval_cache.load(cfg) is not None, "the first run stored its start evaluation"
    capsys.readouterr()
    second = train(cfg, quiet=True)
    assert "start model: reusing its evaluation from" in "".join(capsys.readouterr())
    assert metrics(second) == metrics(first)
    assert json.loads((second / "summary.json").read_text())["paired"] is not None


def test_the_key_changes_with_what_the_evaluation_depends_on(tmp_path):
    base = tiny_config(tmp_path)
    same = tiny_config(tmp_path, "steps=99", "optim.lr=0.5", "eval.before=always")  # training keys: same eval
    assert eval_cache.key_of(base) == eval_cache.key_of(same)
    for override in (
        "eval.samples=3",
        "task.eval_size=4",
        "seed=1",
        "sampling.max_new_tokens=9",
        "rewards.components={correct: 1.0}",
        "model.dtype=bfloat16",
    ):
        assert eval_cache.key_of(tiny_config(tmp_path, override)) != eval_cache.key_of(base), override


def test_always_recomputes_and_skip_leaves_it_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REASONRL_EVAL_CACHE", str(tmp_path / "evals"))
    train(tiny_config(tmp_path, "name=a", "steps=2"), quiet=True)
    capsys.readouterr()
    train(tiny_config(tmp_path, "name=b", "steps=2", "eval.before=always"), quiet=True)
    assert "reusing" not in "".join(capsys.readouterr())
    skipped = train(tiny_config(tmp_path, "name=c", "steps=2", "eval.before=skip"), quiet=True)
    assert "start model not evaluated (eval.before=skip)" in "".join(capsys.readouterr())
    assert [r["step"] for r in metrics(skipped)] == [1, 2]
    summary = json.loads((skipped / "summary.json").read_text())
    assert summary["before"] is None and summary["paired"] is None and summary["after"]["problems"] == 8


def test_runs_with_the_forgetting_monitor_are_not_cached(tmp_path):
    # the monitor's step-0 retention is measured on other tasks and against the base, outside the key
    assert not eval_cache.cacheable(tiny_config(tmp_path, "forget.enabled=true"))
