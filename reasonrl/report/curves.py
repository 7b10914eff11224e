"""The report's curves: metric series from metrics.jsonl, grouped into families (reward and its components,
length, truncation, accuracy and eval, KL, entropy, step time, forgetting, loss, then one family per prefix),
each family split into charts whose series share a scale. Any new metric family is drawn without code here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from reasonrl.report.files import clean, is_number

MAX_POINTS = 4000
"""Points kept per curve (longer series are averaged over consecutive steps)."""
SCALE_RATIO = 10.0
"""Series of one family whose magnitudes differ more than this go on separate charts (not rewards and evals,
which share a 0-1 scale and read best together)."""


def metric_series(rows: list[dict[str, Any]]) -> dict[str, list[list[float | None]]]:
    """{metric: [[step, value], ...]} sorted by step; non-finite values become None (a gap in the curve)."""
    series: dict[str, list[list[float | None]]] = {}
    for row in rows:
        step = row.get("step")
        if not is_number(step):
            continue
        for key, value in row.items():
            if key != "step" and (is_number(value) or value is None):
                series.setdefault(key, []).append([step, clean(float(value)) if value is not None else None])
    return {k: downsample(sorted(v, key=lambda p: cast(float, p[0]))) for k, v in sorted(series.items())}


def downsample(points: list[list[float | None]], limit: int = MAX_POINTS) -> list[list[float | None]]:
    """At most `limit` points: consecutive buckets averaged (step and value), gaps kept when a bucket has none."""
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / limit)
    out: list[list[float | None]] = []
    for i in range(0, len(points), size):
        bucket = points[i : i + size]
        values = [v for _, v in bucket if v is not None]
        out.append(
            [sum(cast(float, s) for s, _ in bucket) / len(bucket), sum(values) / len(values) if values else None]
        )
    return out


def _is_length(key: str) -> bool:
    leaf = key.rsplit("/", 1)[-1]
    return leaf.endswith(("completion_tokens", "length"))


FAMILIES: list[tuple[str, Callable[[str], bool]]] = [
    ("Reward and its components", lambda k: k == "rollout/reward" or k.startswith("reward/")),
    ("Length (tokens)", _is_length),
    ("Truncation", lambda k: "truncat" in k),
    ("Accuracy and eval", lambda k: k.startswith("eval/")),
    ("KL", lambda k: k.startswith(("loss/kl", "kl/", "forget/kl"))),
    ("Entropy", lambda k: "entropy" in k),
    ("Step time (s)", lambda k: k.startswith("time/")),
    ("Peak memory per phase (GiB)", lambda k: k.startswith("memory/")),
    ("Forgetting", lambda k: k.startswith("forget/")),
    ("Loss", lambda k: k.startswith("loss/")),
]
"""Families in the order they are shown; a metric joins the first whose test it passes, else its prefix's."""
UNSPLIT = ("Reward and its components", "Accuracy and eval")


def magnitude(points: list[list[float | None]]) -> float:
    return max((abs(v) for _, v in points if v is not None), default=0.0)


def split_by_scale(
    keys: list[str], series: dict[str, list[list[float | None]]], ratio: float = SCALE_RATIO
) -> list[list[str]]:
    """Groups of keys whose largest |value| lie within `ratio` of each other (all-zero series join the first)."""
    zero = [k for k in keys if magnitude(series[k]) == 0]
    ranked = sorted((k for k in keys if magnitude(series[k]) > 0), key=lambda k: magnitude(series[k]))
    groups: list[list[str]] = []
    for key in ranked:
        if groups and magnitude(series[key]) <= magnitude(series[groups[-1][0]]) * ratio:
            groups[-1].append(key)
        else:
            groups.append([key])
    if zero:
        groups = [zero + groups[0], *groups[1:]] if groups else [zero]
    return [sorted(g, key=keys.index) for g in groups]


def chart_groups(series: dict[str, list[list[float | None]]]) -> list[dict[str, Any]]:
    """[{title, charts: [{title, keys, kind}]}]: metric families, each split into charts of one scale.
    Step time is one stacked chart (generate, reward, update, ...) with time/step as the total line."""
    families: dict[str, list[str]] = {}
    for key in series:
        name = next((title for title, test in FAMILIES if test(key)), key.split("/", 1)[0] if "/" in key else "other")
        families.setdefault(name, []).append(key)
    order = [t for t, _ in FAMILIES] + sorted(n for n in families if n not in dict(FAMILIES))
    out = []
    for name in (n for n in order if n in families):
        keys = families[name]
        if name.startswith("Step time") and "time/step" in keys and len(keys) > 1:
            charts = [
                {"title": name, "keys": [k for k in keys if k != "time/step"], "total": "time/step", "kind": "stack"}
            ]
        else:
            groups = [keys] if name in UNSPLIT else split_by_scale(keys, series)
            charts = [
                {
                    "title": name if len(groups) == 1 else f"{name}: {', '.join(short(k) for k in g)}",
                    "keys": g,
                    "kind": "line",
                }
                for g in groups
            ]
        out.append({"title": name, "charts": charts})
    return out


def short(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key
