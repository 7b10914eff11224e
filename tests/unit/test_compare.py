"""`reasonrl compare`: runs overlaid, and a sweep's trials, importance and parallel coordinates, in Chromium."""

import json

import pytest

from reasonrl.cli import main
from reasonrl.report.compare import write_compare
from tests.unit.test_report import Elements, needs_chromium, render


def fake_run(path, rewards, evals):
    path.mkdir(parents=True)
    rows = [{"step": 0, "eval/accuracy": evals[0]}]
    rows += [{"step": i + 1, "rollout/reward": r, "rollout/completion_tokens": 20 + i} for i, r in enumerate(rewards)]
    rows[-1]["eval/accuracy"] = evals[1]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "config.yaml").write_text("name: x\n")
    (path / "report.html").write_text("<html></html>")
    return path


def fake_sweep(tmp_path):
    sweep = tmp_path / "s-sweep"
    trials = []
    for n, (lr, mode, value, state) in enumerate(
        [
            (1e-4, "a", 0.5, "COMPLETE"),
            (3e-3, "</script><img src=x onerror=alert(1)>", 0.7, "COMPLETE"),
            (1e-3, "a", None, "FAIL"),
            (5e-4, "b", 0.4, "PRUNED"),
        ]
    ):
        run = fake_run(sweep / "trials" / f"trial_{n:03d}", [0.1, 0.2 + n / 10], [0.3, value or 0.3])
        trials.append(
            {
                "number": n,
                "state": state,
                "value": value,
                "params": {"optim.lr": lr, "algo.mode": mode},
                "run_dir": str(run),
                "note": "boom" if state == "FAIL" else None,
                "intermediate": {},
            }
        )
    data = {
        "objective": "eval/accuracy",
        "direction": "maximize",
        "trials": trials,
        "importance": {"optim.lr": 0.8, "algo.mode": 0.2},
    }
    (sweep / "trials.json").write_text(json.dumps(data))
    return sweep


def test_bad_paths_get_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for paths, message in [([tmp_path / "nope"], "no such directory"), ([tmp_path / "empty"], "not a run directory")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", *map(str, paths)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@needs_chromium
def test_runs_are_overlaid_with_links_to_their_reports(tmp_path):
    runs = [fake_run(tmp_path / f"run{i}", [0.1 * i, 0.2, 0.3], [0.4, 0.5 + i / 10]) for i in range(3)]
    page = write_compare(runs, tmp_path / "cmp.html")
    dom, console = render(page, tmp_path)
    doc = Elements(dom)
    body = doc.body()
    assert console == [] and body.get("data-rendered") == "ok" and "data-error" not in body
    assert body["data-charts"] == "3" and body["data-lines"] == "9"  # reward, accuracy, length x 3 runs
    assert doc.count("a", href="run0/report.html") == 1 and body["data-trials"] == "0"


@needs_chromium
def test_a_sweep_page_has_the_trials_sorted_best_first_importance_and_parallel_lines(tmp_path):
    sweep = fake_sweep(tmp_path)
    page = write_compare([sweep])
    assert page == sweep / "compare.html"
    dom, console = render(page, tmp_path)
    doc = Elements(dom)
    body = doc.body()
    assert console == [] and body.get("data-rendered") == "ok" and "data-error" not in body
    assert body["data-trials"] == "4" and doc.count("tr", **{"class": "trial"}) == 4
    assert body["data-first-trial"] == "1"  # the best objective first
    assert body["data-parallel"] == "3" and doc.count("polyline", **{"class": "trial-line"}) == 3  # FAIL has no value
    assert doc.count("tr", **{"class": "importance"}) == 2
    assert doc.count("img") == 0 and "&lt;/script&gt;&lt;img" in dom  # a parameter value is text, not markup
