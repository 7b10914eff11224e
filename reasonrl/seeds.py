"""`reasonrl seeds RECIPE --n 5`: one recipe over several seeds, and what its before/after change is worth.

    reasonrl seeds recipes/quickstart.yaml --n 5 [overrides]   # runs <name>-seed0 ... <name>-seed4
    -> <output_dir>/<name>-seeds.json and a table: each seed's held-out accuracy before and after, the mean
       with a 95% t interval, and a one-sided paired t-test of "after > before" across seeds; the same for
       greedy accuracy when the runs measured it (eval.greedy with sampled evaluations, or --greedy)

The seed (RunConfig.seed) fans out to the prompt order, the LoRA initialisation and sampling; the task's seed
(task.seed: its train/eval split and generated problems) stays fixed, so every run is scored on the same
held-out problems. A finished seed's run is reused and an unfinished one resumed, so the command can be
rerun after an interruption.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig, apply_overrides
from reasonrl.stats import mean_interval, paired_t_test
from reasonrl.utils.files import atomic_write_text


def seed_configs(cfg: RunConfig, n: int, first: int | None = None) -> list[RunConfig]:
    """n copies of cfg with seeds first..first+n-1 (default: from cfg.seed), each named <name>-seed<seed>."""
    if n < 1:
        raise ValueError(f"--n {n}: give at least 1 seed (2 or more for an interval)")
    start = cfg.seed if first is None else first
    return [apply_overrides(cfg, [f"seed={s}", f"name={cfg.name}-seed{s}"]) for s in range(start, start + n)]


def run_seed(cfg: RunConfig, quiet: bool) -> dict[str, Any]:
    """Train one seed (reused when finished, resumed when interrupted); its summary.json."""
    from reasonrl.train import train

    run_dir = Path(cfg.output_dir) / cfg.name
    if not (run_dir / "summary.json").is_file():
        train(cfg, resume=(run_dir / "config.yaml").is_file(), quiet=quiet)
    return json.loads((run_dir / "summary.json").read_text())


def greedy_accuracy(cfg: RunConfig, adapter: Path | None) -> float | None:
    """Held-out accuracy of the start model (adapter None) or a run's adapter, decoding greedily (one sample)."""
    from reasonrl.evaluate import eval_sets, evaluate_run, load_for_eval

    greedy = apply_overrides(cfg, ["eval.temperature=0", "eval.samples=1"])
    if adapter is not None:
        greedy = apply_overrides(greedy, [f"model.adapter={adapter}"])
    _, tokenizer, engine, env = load_for_eval(greedy)
    try:
        ((_, examples),) = eval_sets(greedy, [greedy.task.name])
        return evaluate_run(env, engine, tokenizer, examples, greedy).accuracy
    finally:
        env.close()


def add_greedy(row: dict[str, Any], cfg: RunConfig, base: float | None) -> None:
    """row["greedy_before"/"greedy_after"]: greedy accuracy of the start model and of the seed's adapter (kept in
    RUN_DIR/greedy.json, so a rerun reuses it). Greedy decoding does not depend on the seed: one base value."""
    run_dir = Path(cfg.output_dir) / cfg.name
    cached = run_dir / "greedy.json"
    if not cached.is_file():
        atomic_write_text(cached, json.dumps({"after": greedy_accuracy(cfg, run_dir / "adapter")}))
    row |= {"greedy_before": base, "greedy_after": json.loads(cached.read_text())["after"]}


def seeds_table(rows: list[dict[str, Any]], prefix: str = "") -> dict[str, Any]:
    """rows: {seed, before, after} accuracies -> the per-seed rows and the statistics across seeds (of the
    prefix+before / prefix+after values, e.g. greedy_)."""
    rows = [r | {"before": r.get(prefix + "before"), "after": r.get(prefix + "after")} for r in rows]
    paired = [r for r in rows if r["before"] is not None and r["after"] is not None]
    out: dict[str, Any] = {"seeds": rows}
    for key in ("before", "after"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = dict(zip(("mean", "low", "high"), mean_interval(values))) if values else None
    if paired:
        changes = [r["after"] - r["before"] for r in paired]
        t, p = paired_t_test([r["before"] for r in paired], [r["after"] for r in paired])
        out["change"] = dict(zip(("mean", "low", "high"), mean_interval(changes))) | {"t": t, "p": p}
    if pooled := pooled_change([r.get("problems") for r in rows], prefix):
        out["pooled"] = pooled
    return out


def pooled_change(tables: list[dict[str, list[Any]] | None], prefix: str = "") -> dict[str, float] | None:
    """The change paired over problems and pooled over seeds: each problem's after - before averaged over the
    seeds, then the mean over problems with a 95% t interval and a one-sided t-test of 'above zero' (the
    problems are the units, as in the single-run paired line; this says nothing about other seeds' spread)."""
    kept = [t for t in tables if t and prefix + "before" in t and prefix + "after" in t]
    if len(kept) != len(tables) or not kept:
        return None
    sums: dict[str, list[float]] = {}
    for t in kept:
        for i, b, a in zip(t["id"], t[prefix + "before"], t[prefix + "after"], strict=True):
            if a is not None and b is not None:
                sums.setdefault(i, []).append(a - b)
    diffs = [sum(v) / len(v) for v in sums.values() if len(v) == len(kept)]
    if len(diffs) < 2:
        return None
    mean, low, high = mean_interval(diffs)
    t_value, p_value = paired_t_test([0.0] * len(diffs), diffs)
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "t": t_value,
        "p": p_value,
        "problems": len(diffs),
        "better": sum(d > 0 for d in diffs),
        "worse": sum(d < 0 for d in diffs),
    }


def format_seeds(name: str, table: dict[str, Any]) -> str:
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def interval(s: dict[str, float] | None, sign: str = "") -> str:
        if s is None:
            return "-"
        if math.isnan(s["low"]):
            return f"{s['mean']:{sign}.3f} (one seed: no interval)"
        return f"{s['mean']:{sign}.3f}  95% CI [{s['low']:{sign}.3f}, {s['high']:{sign}.3f}]"

    what = table.get("metric", "accuracy").replace("_", " ")
    lines = [
        f"\n{name}: held-out {what} over {len(table['seeds'])} seeds",
        f"{'seed':>6}{'before':>9}{'after':>9}{'change':>9}",
    ]
    for r in table["seeds"]:
        change = f"{r['after'] - r['before']:+9.3f}" if r["before"] is not None else ""
        lines.append(f"{r['seed']:>6}{cell(r['before']):>9}{cell(r['after']):>9}{change}")
    lines += [f"before  {interval(table['before'])}", f"after   {interval(table['after'])}"]
    if "change" in table:
        c = table["change"]
        verdict = "above zero" if c["p"] < 0.05 else "not shown to be above zero"
        lines.append(f"change  {interval(c, '+')}")
        lines.append(f"paired t-test of after > before across seeds: t = {c['t']:.2f}, p = {c['p']:.3f} ({verdict})")
    if c := table.get("pooled"):
        verdict = "above zero" if c["p"] < 0.05 else "not shown to be above zero"
        lines.append(
            f"paired over {c['problems']} problems, pooled over seeds: change {c['mean']:+.3f} "
            f"[{c['low']:+.3f}, {c['high']:+.3f}], {c['better']} better, {c['worse']} worse; "
            f"t = {c['t']:.2f}, p = {c['p']:.3g} ({verdict})"
        )
    return "\n".join(lines)


METRICS = ("accuracy", "mean_reward")


def run_seeds(
    cfg: RunConfig,
    n: int,
    first: int | None = None,
    quiet: bool = False,
    metric: str = "accuracy",
    greedy: bool = False,
) -> Path:
    """Train cfg over n seeds, print the table of `metric` (held-out accuracy, or mean reward for tasks without
    reference answers), write <output_dir>/<name>-seeds.json; returns that file."""
    if greedy and metric != "accuracy":
        raise ValueError("--greedy measures accuracy: leave --metric at accuracy")
    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r}: one of {', '.join(METRICS)}")
    rows, base = [], None
    for seeded in seed_configs(cfg, n, first):
        summary = run_seed(seeded, quiet)
        before, after = summary.get("before") or {}, summary["after"]
        rows.append({"seed": seeded.seed, "run": seeded.name, "before": before.get(metric), "after": after[metric]})
        if metric == "accuracy" and summary.get("problems"):
            rows[-1]["problems"] = summary["problems"]
        if metric == "accuracy" and before.get("greedy") and after.get("greedy"):  # eval.greedy measured both
            rows[-1] |= {"greedy_before": before["greedy"]["accuracy"], "greedy_after": after["greedy"]["accuracy"]}
        elif greedy:
            base = greedy_accuracy(seeded, None) if base is None else base
            add_greedy(rows[-1], seeded, base)
    if all(r["after"] is None for r in rows):
        raise ValueError(f"the runs logged no held-out {metric} (no reference answers?); use --metric mean_reward")
    table = seeds_table(rows) | {"metric": metric}
    print(format_seeds(cfg.name, table), flush=True)
    if all("greedy_after" in r for r in rows):
        table["greedy"] = seeds_table(rows, "greedy_") | {"metric": "greedy accuracy"}
        print(format_seeds(cfg.name, table["greedy"]), flush=True)
    target = Path(cfg.output_dir) / f"{cfg.name}-seeds.json"
    atomic_write_text(target, json.dumps(table, indent=1))
    return target
