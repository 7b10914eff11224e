"""The run report: data extraction (NaN, half lines, families, sample caps, escaping) in Python, and the page
itself in headless Chromium: it renders with no console message, draws the curves and lists the traces."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from reasonrl import report
from reasonrl.cli import main
from reasonrl.report import build_page, write_report, write_report_safely
from reasonrl.report.curves import chart_groups, downsample, metric_series, split_by_scale
from reasonrl.report.files import read_jsonl
from reasonrl.report.traces import is_correct, select_samples

EVIL = '</script><img src=x onerror="document.body.dataset.pwned=1"> & <!-- "q" \u2028 </style>'


def synthetic_run(root: Path, steps: int = 6, groups: int = 2, group_size: int = 4, finished: bool = True) -> Path:
    """A run directory as train() writes it, with a NaN, a half-written last line and markup in a completion."""
    run = root / "syn"
    (run / "rollouts").mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "syn",
                "steps": steps,
                "prompts_per_step": groups,
                "samples_per_prompt": group_size,
                "model": {"path": "tiny:llama"},
                "task": {"name": "jsonl"},
                "algo": {"advantage": "grpo", "loss": {"name": "ppo_clip"}},
                "rewards": {"components": {"correct": 1.0, "format": 0.1}},
            }
        )
    )
    lines = [
        {"step": 0, "eval/accuracy": 0.25, "eval/mean_length": 20.0, "eval/pass@4": 0.5, "forget/gsm8k/delta": 0.0}
    ]
    for s in range(1, steps + 1):
        row = {
            "step": s,
            "rollout/reward": 0.1 * s,
            "reward/correct": 0.1 * s,
            "reward/format": 0.5,
            "loss/kl": 0.001 * s,
            "loss/entropy": 1.0 - 0.1 * s,
            "loss/pg": float("nan") if s == 2 else 0.01,
            "rollout/completion_tokens": 30.0 - s,
            "rollout/truncation_rate": 0.1,
            "time/generate": 2.0,
            "time/reward": 0.1,
            "time/update": 3.0,
            "time/step": 5.2,
        }
        if s % 3 == 0:
            row |= {
                "eval/accuracy": 0.25 + 0.05 * s,
                "eval/pass@4": 0.5,
                "forget/gsm8k/delta": -0.01 * s,
                "forget/kl_forward": 0.002 * s,
            }
        lines.append(row)
        with (run / "rollouts" / f"step_{s:06d}.jsonl").open("w") as f:
            for i in range(groups * group_size):
                correct = float(i % 2)
                f.write(
                    json.dumps(
                        {
                            "step": s,
                            "group": i // group_size,
                            "id": f"p{i // group_size}",
                            "prompt": f"what is {s}+{i}?",
                            "answer": str(s + i),
                            "completion": EVIL if (s, i) == (3, 0) else f"it is {s + i - 1 + correct}",
                            "reward": correct + 0.1,
                            "reward_parts": {"correct": correct, "format": 1.0},
                            "completion_tokens": 5 + i,
                            "truncated": i == 3,
                            "errors": [],
                        }
                    )
                    + "\n"
                )
    text = "".join(json.dumps(row) + "\n" for row in lines)  # json.dumps writes NaN for the nan
    (run / "metrics.jsonl").write_text(text + '{"step": 7, "rollout/rew')  # killed mid-line
    if finished:
        (run / "summary.json").write_text(
            json.dumps(
                {
                    "task": "jsonl",
                    "steps": steps,
                    "paired": {
                        "problems": 8,
                        "mean_diff": 0.1,
                        "ci_low": -0.05,
                        "ci_high": 0.25,
                        "better": 3,
                        "worse": 1,
                    },
                    **{
                        k: {
                            "problems": 8,
                            "samples_per_problem": 2,
                            "accuracy": acc,
                            "accuracy_ci": [acc - 0.1, acc + 0.1],
                            "mean_reward": acc,
                            "reward_parts": {"correct": acc},
                            "mean_length": 9.0,
                            "truncation_rate": 0.0,
                        }
                        for k, acc in (("before", 0.25), ("after", 0.55))
                    },
                }
            )
        )
    return run


def embedded_data(page: str) -> dict:
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_metric_series_turns_nan_into_gaps_and_skips_a_half_line(tmp_path):
    notes: list[str] = []
    rows = read_jsonl(synthetic_run(tmp_path) / "metrics.jsonl", notes)
    series = metric_series(rows)
    assert series["loss/pg"][1] == [2, None] and series["loss/pg"][0] == [1, 0.01]
    assert [p[0] for p in series["eval/accuracy"]] == [0, 3, 6]
    assert len(rows) == 7 and "skipped 1 unreadable line" in notes[0]


def test_downsample_averages_consecutive_buckets():
    points = [[s, float(s)] for s in range(10)]
    assert downsample(points, limit=4) == [[1.0, 1.0], [4.0, 4.0], [7.0, 7.0], [9.0, 9.0]]
    assert downsample([[0, None], [1, None], [2, 5.0]], limit=2) == [[0.5, None], [2.0, 5.0]]
    assert downsample(points, limit=10) is points


def test_default_smoothing_spans_about_a_fortieth_of_the_curve():
    assert [report.default_smoothing(n) for n in (10, 29, 30, 100, 2000, 10_000)] == [0, 0, 0, 0.6, 0.98, 0.99]


def test_split_by_scale_separates_magnitudes_and_keeps_zero_series_with_the_first():
    series = {"a": [[1, 1.0]], "b": [[1, -0.5]], "c": [[1, 100.0]], "z": [[1, 0.0]], "n": [[1, None]]}
    assert split_by_scale(["a", "b", "c", "z", "n"], series, ratio=10) == [["a", "b", "z", "n"], ["c"]]
    assert split_by_scale(["a", "c"], series, ratio=1000) == [["a", "c"]]


def test_chart_groups_follow_the_families_and_stack_step_time(tmp_path):
    rows = read_jsonl(synthetic_run(tmp_path) / "metrics.jsonl", [])
    groups = {g["title"]: g["charts"] for g in chart_groups(metric_series(rows))}
    assert list(groups)[:4] == ["Reward and its components", "Length (tokens)", "Truncation", "Accuracy and eval"]
    assert groups["Reward and its components"][0]["keys"] == ["reward/correct", "reward/format", "rollout/reward"]
    assert groups["Length (tokens)"][0]["keys"] == ["eval/mean_length", "rollout/completion_tokens"]
    assert groups["KL"][0]["keys"] == ["forget/kl_forward", "loss/kl"]
    assert groups["Step time (s)"] == [
        {
            "title": "Step time (s)",
            "kind": "stack",
            "total": "time/step",
            "keys": ["time/generate", "time/reward", "time/update"],
        }
    ]
    assert groups["Forgetting"][0]["keys"] == ["forget/gsm8k/delta"] and "Entropy" in groups


def test_is_correct_needs_full_credit_on_the_correct_component():
    assert is_correct({"correct": 1.0}) is True and is_correct({"correct": 0.5}) is False
    assert is_correct({"format": 1.0}) is None and is_correct({"correct": None}) is None and is_correct(None) is None


def test_sample_cap_keeps_the_newest_steps_and_draws_from_older_ones(tmp_path):
    run = synthetic_run(tmp_path, steps=10)  # 8 samples per step
    notes: list[str] = []
    picked = select_samples(run, max_samples=20, notes=notes)
    # newest step whole (8 <= 10; a second would pass half the cap), then the 12 left spread over 9 older
    # steps: every older step, 12 // 9 = 1 sample each
    assert [r["step"] for r in picked] == [10] * 8 + [9, 8, 7, 6, 5, 4, 3, 2, 1]
    assert "80 samples in 10 logged steps" in notes[0] and "--max-samples" in notes[0]
    everything: list[str] = []
    assert len(select_samples(run, max_samples=1000, notes=everything)) == 80 and not everything
    assert select_samples(run, max_samples=0, notes=[]) == []


def test_page_embeds_markup_as_data_and_shows_the_tables(tmp_path):
    page = build_page(synthetic_run(tmp_path))
    assert EVIL not in page and "<img" not in page and page.lower().count("<script") == 2
    data = embedded_data(page)
    assert EVIL in [s["completion"] for s in data["samples"]]  # the exact text survives the escaping
    assert len(data["samples"]) == 48 and len(data["prompts"]) == 48
    assert "Content-Security-Policy" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "+0.100" in page and "[0.150, 0.350]" in page  # paired change and the before CI
    assert "pass@4" in page and "gsm8k/delta" in page and "finished" in page


def test_an_interrupted_run_still_gives_a_page(tmp_path):
    run = tmp_path / "cut"
    run.mkdir()
    (run / "config.yaml").write_text("name: cut\nsteps: 50\n")
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/accuracy": NaN}\n{"step": 1, "rollout/re')
    page = build_page(run)
    assert "incomplete: last logged step 0 of 50" in page and "no summary.json" in page
    assert "no rollouts/step_*.jsonl" in page and embedded_data(page)["series"]["eval/accuracy"] == [[0, None]]
    assert "no config.yaml" in build_page(tmp_path)  # an empty directory


def test_write_report_safely_warns_instead_of_raising(tmp_path, monkeypatch, caplog):
    def broken(run_dir, max_samples):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "build_page", broken)
    (tmp_path / "config.yaml").write_text("steps: 1\n")
    assert write_report_safely(tmp_path) is None
    assert "disk full" in caplog.text and "reasonrl report" in caplog.text


def test_cli_report_writes_the_page_and_rejects_a_missing_directory(tmp_path, capsys):
    run = synthetic_run(tmp_path)
    main(["report", str(run), "--out", str(tmp_path / "out" / "r.html"), "--max-samples", "10"])
    assert "wrote" in capsys.readouterr().out
    assert len(embedded_data((tmp_path / "out" / "r.html").read_text())["samples"]) == 10
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "missing")])
    assert exit_info.value.code == 2 and "not found" in capsys.readouterr().err


# ---------- headless Chromium

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install chromium; scripts/setup.sh does it when run as root)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--enable-logging=stderr",
    "--v=0",
]


class Elements(HTMLParser):
    """Every start tag of a document with its attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str, **attrs: str) -> int:
        """Elements of a tag with these attributes (class: these class names, among others)."""

        def has(a: dict[str, str | None], key: str, value: str) -> bool:
            if key == "class":
                return set(value.split()) <= set((a.get("class") or "").split())
            return a.get(key) == value

        return sum(t == tag and all(has(a, k, v) for k, v in attrs.items()) for t, a in self.tags)

    def body(self) -> dict[str, str | None]:
        return next(a for t, a in self.tags if t == "body")


def render(page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console line Chromium logged (messages and errors)."""
    proc = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


@needs_chromium
def test_page_renders_in_chromium_with_curves_and_traces(tmp_path):
    run = synthetic_run(tmp_path)
    page = write_report(run)
    dom, console = render(page, tmp_path)
    assert console == []
    doc = Elements(dom)
    body = doc.body()
    assert body.get("data-rendered") == "ok" and "data-error" not in body and "data-pwned" not in body
    specs = [c for g in embedded_data(page.read_text())["groups"] for c in g["charts"]]
    assert int(body["data-charts"]) == len(specs) == doc.count("svg", role="img") and len(specs) >= 9
    drawn = sum(len(c["keys"]) + ("total" in c) for c in specs)  # one path per series, stack layers included
    assert doc.count("path", **{"class": "series"}) == drawn == 17
    assert body["data-samples"] == "48" and body["data-rows"] == "48" and doc.count("tr", **{"class": "row"}) == 48
    assert doc.count("img") == 0 and "&lt;/script&gt;&lt;img src=x" in dom  # markup shown as text


@needs_chromium
def test_trace_filters_from_the_url_fragment(tmp_path):
    run = synthetic_run(tmp_path)
    page = write_report(run)
    dom, console = render(page, tmp_path, "#step=3&correct=incorrect&trunc=no&open=1&sort=step-asc")
    assert console == []
    doc = Elements(dom)
    # step 3 has 8 samples: i odd are correct, i == 3 is truncated -> the incorrect, finished ones are i = 0, 2, 4, 6
    assert doc.body()["data-matches"] == "4" and doc.count("tr", **{"class": "row"}) == 4
    assert doc.count("tr", **{"class": "detail"}) == 1 and doc.count("table", **{"class": "num parts"}) == 1
    assert "<pre>&lt;/script&gt;&lt;img" in dom and doc.count("img") == 0
    dom, _ = render(page, tmp_path, "#min=1.05&max=2")
    assert Elements(dom).body()["data-matches"] == "24"  # the correct ones: reward 1.1


@needs_chromium
def test_report_of_an_interrupted_run_renders(tmp_path):
    run = tmp_path / "cut"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/accuracy": 0.5}\n{"step": 1, "rollout/reward": NaN}\n')
    dom, console = render(write_report(run), tmp_path)
    body = Elements(dom).body()
    assert console == [] and body.get("data-rendered") == "ok" and body["data-rows"] == "0"


@needs_chromium
def test_a_tiny_training_run_ends_with_a_report_that_renders(tmp_path):
    from reasonrl.train import train
    from tests.helpers import tiny_config

    run_dir = train(tiny_config(tmp_path, "steps=2"), quiet=True)
    dom, console = render(run_dir / "report.html", tmp_path)
    body = Elements(dom).body()
    assert console == [] and body.get("data-rendered") == "ok" and "data-error" not in body
    assert int(body["data-charts"]) >= 6 and body["data-samples"] == "32" and body["data-rows"] == "32"
