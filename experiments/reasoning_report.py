"""The report of experiments/reasoning_study.py: its Markdown tables and its SVG plot, from the study's summary
(family -> arm -> row: means over seeds with t intervals, the paired changes, the start and end of training)."""

from __future__ import annotations

import math
from typing import Any


def fmt(cell: Any) -> str:
    if isinstance(cell, list | tuple):  # (mean, low, high)
        return f"{cell[0]:.3f}" if math.isnan(cell[1]) else f"{cell[0]:.3f} [{cell[1]:.2f}, {cell[2]:.2f}]"
    return "-" if cell is None else f"{cell:.3f}" if isinstance(cell, float) else str(cell)


def change(c: dict[str, float] | None) -> str:
    return f"{c['mean']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" if c else "-"


MARK = "<!-- the tables below are written by experiments/reasoning_study.py; the text above this line is kept -->"


def base_model(arms: dict[str, Any]) -> dict[str, Any]:
    """The base model's evaluation: where the arms without SFT start."""
    return next((row["before"] for row in arms.values() if not row.get("sft")), {})


def markdown(summary: dict[str, Any], about: dict[str, str]) -> str:
    """The tables: one per family, a row per arm; `about` says in words what each family and arm is."""
    lines = [
        "# Reasoning study: verified steps against outcome-only rewards",
        "",
        "`experiments/reasoning_study.py` (arms and measures in its docstring).",
        "Accuracy is on the family's held-out problems after training, mean over seeds [95% t interval];",
        "the changes are against the base model and the outcome arm, paired over problems (each problem averaged",
        "over seeds).",
        "",
    ]
    for family, arms in summary.items():
        base = base_model(arms)
        steps = sorted({s for row in arms.values() for s in row["steps"]})
        lines += [
            f"## {family}: {about[family]}",
            "",
            f"Base model: sampled {fmt(base.get('sampled'))}, greedy {fmt(base.get('greedy'))}, "
            f"pass@4 {fmt(base.get('pass@4'))}, length {fmt(base.get('length'))} tokens. "
            f"RL steps per run: {', '.join(map(str, steps))}.",
            "",
            "| arm | seeds | sampled | greedy | pass@4 | length | with a step | false steps | greedy vs base "
            "| greedy vs outcome | sampled vs outcome | steps per completion (start, end) | trivial (start, end) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, row in arms.items():
            vs, t, g = row.get("vs_outcome") or {}, row["training"], row.get
            lines.append(
                f"| {arm} ({about[arm]}) | {row['seeds']} | {fmt(g('sampled'))} | {fmt(g('greedy'))} "
                f"| {fmt(g('pass@4'))} | {fmt(g('length'))} | {fmt(g('with_step'))} "
                f"| {fmt(g('false_steps'))} | {change(row['vs_base'])} | {change(vs.get('greedy'))} "
                f"| {change(vs.get('sampled'))} "
                f"| {t['start']['steps_per_completion']:.2f}, {t['end']['steps_per_completion']:.2f} "
                f"| {t['start']['trivial_steps']:.2f}, {t['end']['trivial_steps']:.2f} |"
            )
        lines.append("")
        for arm, row in arms.items():
            if row.get("vs_start"):
                b, v = row["before"], row["vs_start"]
                lines += [
                    f"{arm}: after the SFT alone (where its RL starts) sampled {fmt(b['sampled'])}, greedy "
                    f"{fmt(b['greedy'])}; the RL after it changed greedy by {change(v['greedy'])} and sampled by "
                    f"{change(v['sampled'])}.",
                    "",
                ]
    return "\n".join(lines)


def svg(summary: dict[str, Any]) -> str:
    """Greedy accuracy after training per family and arm (bars); the base model's per family (dashed line)."""
    bar, gap, height = 18, 10, 220
    parts, x = [], 40
    for family, arms in summary.items():
        parts.append(f'<text x="{x}" y="{height + 50}">{family}</text>')
        first = x
        for arm, row in arms.items():
            h = (row.get("greedy") or (0.0,))[0] * height
            parts.append(f'<rect x="{x}" y="{height - h + 10}" width="{bar}" height="{h}" fill="#4a7ab5"/>')
            parts.append(
                f'<text x="{x + bar / 2}" y="{height + 24}" text-anchor="end" '
                f'transform="rotate(-35 {x + bar / 2} {height + 24})">{arm}</text>'
            )
            x += bar + gap
        if (base := base_model(arms).get("greedy")) is not None:
            y = height - base * height + 10
            parts.append(
                f'<line x1="{first - 4}" y1="{y}" x2="{x - gap + 4}" y2="{y}" stroke="#c33" stroke-dasharray="4"/>'
            )
        x += 3 * gap
    parts.append(f'<line x1="30" y1="{height + 10}" x2="{x}" y2="{height + 10}" stroke="#333"/>')
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{x + 20}" height="{height + 60}" font-size="11">'
    return f'{head}<text x="4" y="14">greedy accuracy (0-1); dashed: base model</text>{"".join(parts)}</svg>'
