"""The run report: one self-contained HTML page per run directory (report.html) with the training curves
grouped by family, the eval and forgetting tables, and a browser of the sampled reasoning traces.

    reasonrl report runs/quickstart                 # also written at the end of every run (log.report)
    reasonrl report runs/quickstart --out /tmp/quickstart.html --max-samples 5000

The page needs no network: its CSS and JS are inline (reasonrl/report/assets/), the charts are SVG drawn by that JS,
and a Content-Security-Policy forbids loading anything else. Run data is embedded as JSON with <, > and &
escaped, and the JS inserts all text with textContent, so a completion may hold any markup. What a killed run
did not finish (half a JSON line, no summary.json, no rollouts) is listed on the page, never raised.
"""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from typing import Any

from reasonrl.report.curves import chart_groups, metric_series
from reasonrl.report.files import clean, load_config_text, load_summary, read_jsonl
from reasonrl.report.tables import run_facts, steps_table_html, summary_html
from reasonrl.report.traces import compact_samples, select_samples
from reasonrl.utils.files import atomic_write_text

ASSETS = Path(__file__).parent / "assets"
MAX_SAMPLES = 2000
"""Default cap on embedded samples: all of the newest steps up to half of it, the rest drawn from older steps."""

log = logging.getLogger(__name__)


def build_page(run_dir: Path, max_samples: int = MAX_SAMPLES) -> str:
    """The report's HTML for a run directory (everything inline)."""
    notes: list[str] = []
    config_text, config = load_config_text(run_dir, notes)
    metrics_path = run_dir / "metrics.jsonl"
    rows = read_jsonl(metrics_path, notes) if metrics_path.is_file() else []
    if not rows:
        notes.append("no metrics logged yet (metrics.jsonl missing or empty): no curves")
    summary = load_summary(run_dir, notes)
    series = metric_series(rows)
    prompts, samples = compact_samples(select_samples(run_dir, max_samples, notes))
    data = {
        "series": series,
        "groups": chart_groups(series),
        "prompts": prompts,
        "samples": samples,
        "smoothing": default_smoothing(max((len(pts) for pts in series.values()), default=0)),
    }
    facts = run_facts(config, rows, summary, notes)
    sections = {
        "title": html.escape(f"reasonrl report: {config.get('name') or run_dir.name}"),
        "name": html.escape(str(config.get("name") or run_dir.name)),
        "facts": "".join(f"<div><span>{html.escape(k)}</span><b>{html.escape(v)}</b></div>" for k, v in facts),
        "notes": "".join(f"<li>{html.escape(n)}</li>" for n in notes),
        "summary": summary_html(summary) or "<p class=muted>No summary.json yet.</p>",
        "evals": steps_table_html(rows, "eval/") or "<p class=muted>No eval/* metrics logged.</p>",
        "forget": steps_table_html(rows, "forget/")
        or "<p class=muted>No forget/* metrics logged (the forgetting monitor was off or has not run yet).</p>",
        "config": html.escape(config_text),
        "css": (ASSETS / "report.css").read_text(),
        "js": page_script("report.js"),
        "data": embed_json(data),
    }
    for key in ("css", "js"):
        assert "</" + ("style" if key == "css" else "script") not in sections[key].lower(), key
    template = (ASSETS / "report.html").read_text()
    return re.sub(r"\{\{(\w+)\}\}", lambda m: sections[m.group(1)], template)  # one pass: inserts not rescanned


def page_script(name: str) -> str:
    """A page's script: the helpers both pages share (assets/common.js), then its own."""
    return (ASSETS / "common.js").read_text() + "\n" + (ASSETS / name).read_text()


def default_smoothing(points: int) -> float:
    """EMA weight of the curves at first view: none under 30 points, else an averaging span of about 1/40 of
    the curve (weight 1 - 40/points: 0.6 at 100 points, 0.98 at 2000), at most 0.99."""
    return 0.0 if points < 30 else round(min(0.99, max(0.0, 1 - 40 / points)), 2)


def embed_json(data: Any) -> str:
    """JSON safe inside <script type=application/json>: no '<', '>' or '&' can close the tag or start a comment."""
    text = json.dumps(clean(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_report(run_dir: str | Path, out: str | Path | None = None, max_samples: int = MAX_SAMPLES) -> Path:
    """Write the run's report (run_dir/report.html unless out is given); returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} not found; give a directory made by `reasonrl train`")
    if not any((run_dir / name).exists() for name in ("config.yaml", "metrics.jsonl", "summary.json")):
        raise ValueError(
            f"{run_dir} is not a run directory (no config.yaml, metrics.jsonl or summary.json); give "
            "a directory made by `reasonrl train`, `sft` or `pipeline`"
        )
    if max_samples < 0:
        raise ValueError(f"--max-samples must be >= 0, got {max_samples}")
    path = Path(out) if out is not None else run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, build_page(run_dir, max_samples))  # a reader never sees half a page
    return path


def write_report_safely(run_dir: Path) -> Path | None:
    """write_report for the end of a run: a failure is logged as a warning and never fails the run."""
    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the report is a convenience; the run's results are already on disk
        log.warning(
            "could not write %s/report.html: %s: %s (retry with `reasonrl report %s`)",
            run_dir,
            type(e).__name__,
            e,
            run_dir,
        )
        return None
