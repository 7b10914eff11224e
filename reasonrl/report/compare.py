"""`reasonrl compare RUN_DIR... | SWEEP_DIR`: one self-contained HTML page comparing runs.

    reasonrl compare runs/quickstart-seed0 runs/quickstart-seed1 runs/quickstart-seed2
    reasonrl compare runs/quickstart-sweep --out /tmp/sweep.html

The page overlays the runs' curves (reward, held-out accuracy and reward, completion length, KL), one colour per
run, with a link to each run's own report. Given a sweep directory, it compares the sweep's trials and adds the
trials table (sortable by any column), Optuna's parameter importance (computed when the sweep wrote trials.json)
and a parallel-coordinates view of the trials. Same rules as the run report: inline CSS and JS, no network, data
embedded as escaped JSON and inserted as text.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

from reasonrl.report import ASSETS, embed_json, page_script
from reasonrl.report.curves import downsample, metric_series
from reasonrl.report.files import clean, read_jsonl
from reasonrl.utils.files import atomic_write_text

CURVES = [
    ("rollout/reward", "training reward"),
    ("eval/accuracy", "held-out accuracy"),
    ("eval/mean_reward", "held-out reward"),
    ("rollout/completion_tokens", "completion length (tokens)"),
    ("loss/kl", "KL to the reference (loss term)"),
    ("forget/kl_forward", "KL(base || policy) (forgetting)"),
]
"""The metrics overlaid, in order; those no run logged are left out."""


def find_runs(paths: list[Path]) -> tuple[list[Path], dict[str, Any] | None]:
    """The run directories to compare and the sweep's trials.json (when the one path given is a sweep)."""
    if len(paths) == 1 and (paths[0] / "trials.json").is_file():
        sweep = json.loads((paths[0] / "trials.json").read_text())
        runs = (
            sorted(p for p in (paths[0] / "trials").iterdir() if p.is_dir()) if (paths[0] / "trials").is_dir() else []
        )
        return runs, sweep
    for p in paths:
        if not (p / "metrics.jsonl").is_file() and not (p / "config.yaml").is_file():
            what = "a sweep directory without trials.json yet" if (p / "sweep.db").is_file() else "a run directory"
            raise ValueError(
                f"{p}: not a run directory (no metrics.jsonl or config.yaml); give run or sweep directories ({what}?)"
            )
    return paths, None


def run_entry(run_dir: Path, page_dir: Path, notes: list[str]) -> dict[str, Any]:
    rows = read_jsonl(run_dir / "metrics.jsonl", notes) if (run_dir / "metrics.jsonl").is_file() else []
    series = metric_series(rows)
    report = run_dir / "report.html"
    return {
        "name": run_dir.name,
        "report": os.path.relpath(report, page_dir) if report.is_file() else None,
        "series": {key: downsample(series[key]) for key, _ in CURVES if key in series},
    }


def build_compare_page(paths: list[Path], page_dir: Path) -> str:
    runs, sweep = find_runs(paths)
    notes: list[str] = []
    entries = [run_entry(r, page_dir, notes) for r in runs]
    present = [(k, label) for k, label in CURVES if any(k in e["series"] for e in entries)]
    if sweep is not None:
        by_dir = {Path(t["run_dir"]).name: t for t in sweep["trials"] if t.get("run_dir")}
        for e in entries:
            trial = by_dir.get(e["name"])
            e["state"] = trial["state"] if trial else None
        if not sweep.get("importance"):
            notes.append("no parameter importance: it needs at least 2 complete trials with varied parameters")
    if not entries:
        notes.append("no runs to compare yet")
    data = {"runs": entries, "curves": present, "sweep": clean(sweep)}
    title = f"reasonrl compare: {paths[0].name}" if sweep else f"reasonrl compare: {len(entries)} runs"
    sections = {
        "title": html.escape(title),
        "notes": "".join(f"<li>{html.escape(n)}</li>" for n in notes),
        "css": (ASSETS / "report.css").read_text(),
        "js": page_script("compare.js"),
        "data": embed_json(data),
    }
    assert "</script" not in sections["js"].lower() and "</style" not in sections["css"].lower()
    template = (ASSETS / "compare.html").read_text()
    return re.sub(r"\{\{(\w+)\}\}", lambda m: sections[m.group(1)], template)


def write_compare(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Write the page (default: SWEEP_DIR/compare.html for a sweep, else ./compare.html); returns its path."""
    dirs = [Path(p) for p in paths]
    for d in dirs:
        if not d.is_dir():
            raise ValueError(f"{d}: no such directory; give run directories or one sweep directory")
    target = (
        Path(out)
        if out
        else (dirs[0] / "compare.html" if (dirs[0] / "trials.json").is_file() else Path("compare.html"))
    )
    atomic_write_text(target, build_compare_page(dirs, target.resolve().parent))
    return target
