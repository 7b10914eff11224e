"""The report's server-side parts: the before/after table of summary.json, one row per evaluation (eval/*) and
per forgetting check (forget/*), and the header facts. All text goes through html.escape."""

from __future__ import annotations

import html
import math
from typing import Any

from reasonrl.report.files import clean, is_number


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool) or not is_number(value):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def summary_html(summary: dict[str, Any] | None) -> str:
    """The before/after table of summary.json and its paired comparison."""
    if not summary:
        return ""
    before, after = summary.get("before") or {}, summary.get("after") or {}
    parts = sorted({*(before.get("reward_parts") or {}), *(after.get("reward_parts") or {})})
    header = [
        "",
        "accuracy",
        "95% CI",
        "samples",
        "mean reward",
        *[f"reward/{p}" for p in parts],
        "mean length",
        "truncated",
    ]
    greedy = isinstance(before.get("greedy"), dict) and isinstance(after.get("greedy"), dict)
    if greedy:
        header[1:2] = ["sampled accuracy"]
        header[3:3] = ["greedy accuracy", "95% CI"]
    rows = []
    for label, r in (("before", before), (f"after {summary.get('steps', '')}".strip(), after)):
        n = (r.get("problems") or 0) * (r.get("samples_per_problem") or 0)
        best = [r["greedy"].get("accuracy"), ci_text(r["greedy"])] if greedy else []
        rows.append(
            [
                label,
                r.get("accuracy"),
                ci_text(r),
                *best,
                n,
                r.get("mean_reward"),
                *[(r.get("reward_parts") or {}).get(p) for p in parts],
                r.get("mean_length"),
                r.get("truncation_rate"),
            ]
        )
    out = (
        f"<p>Held-out {html.escape(str(summary.get('task', '')))}: {html.escape(fmt(before.get('problems')))}"
        f" problems x {html.escape(fmt(before.get('samples_per_problem')))} samples.</p>" + table(header, rows)
    )
    for key, what in (("paired", "sampled accuracy" if greedy else "accuracy"), ("paired_greedy", "greedy accuracy")):
        p = summary.get(key) or {}
        if p and all(is_number(p.get(k)) for k in ("mean_diff", "ci_low", "ci_high")):
            out += (
                f"<p>Paired on the same {html.escape(fmt(p.get('problems')))} problems: {what} change "
                f"<b>{p['mean_diff']:+.3f}</b> [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], "
                f"{html.escape(fmt(p.get('better')))} better, {html.escape(fmt(p.get('worse')))} worse.</p>"
            )
    return out


def ci_text(r: dict[str, Any]) -> str | None:
    """'[0.212, 0.297]' from an evaluation's accuracy_ci, or None when it has none."""
    ci = r.get("accuracy_ci")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, list) and len(ci) == 2 and None not in ci else None


def steps_table_html(rows: list[dict[str, Any]], prefix: str) -> str:
    """One row per logged step that has `prefix` metrics, one column per such metric (prefix dropped)."""
    keys = sorted(
        {k for row in rows for k in row if k.startswith(prefix)},
        key=lambda k: (not any(w in k for w in ("accuracy", "pass@", "maj@", "delta")), k),
    )
    picked = [row for row in rows if any(row.get(k) is not None for k in keys)]
    if not picked:
        return ""
    return table(
        ["step", *[k[len(prefix) :] for k in keys]],
        [[row.get("step"), *[clean(row.get(k)) for k in keys]] for row in picked],
        "num",
    )


def run_facts(
    config: dict[str, Any], rows: list[dict[str, Any]], summary: dict[str, Any] | None, notes: list[str]
) -> list[tuple[str, str]]:
    """The header's key/value strip: model, task, algorithm, progress and status."""

    def get(path: str) -> Any:
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    last = max((row["step"] for row in rows if is_number(row.get("step"))), default=0)
    total = get("steps")
    if summary:
        status = "finished"
    elif total and last >= total:
        status = "all steps logged, no summary.json yet"
    else:
        status = f"incomplete: last logged step {last} of {total or '?'}"
    if not summary:
        notes.append("no summary.json: the run is still going or was interrupted; showing what it logged")
    rewards = get("rewards.components")
    facts = [
        ("model", get("model.path")),
        ("task", get("task.name")),
        ("algorithm", " / ".join(str(x) for x in (get("algo.advantage"), get("algo.loss.name")) if x)),
        ("rewards", ", ".join(f"{k} x{v}" for k, v in rewards.items()) if isinstance(rewards, dict) else None),
        (
            "batch",
            f"{get('prompts_per_step')} prompts x {get('samples_per_prompt')} samples"
            if get("prompts_per_step")
            else None,
        ),
        ("steps", f"{last} / {total}" if total else str(last)),
        ("status", status),
    ]
    return [(k, str(v)) for k, v in facts if v not in (None, "")]
