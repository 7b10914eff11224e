"""The report's trace browser data: which sampled completions to embed (all of the newest steps, an even draw
from older ones, capped) and their compact form (prompts stored once per group)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from reasonrl.report.files import clean, is_number, read_jsonl

MAX_TEXT = 20_000
"""Characters kept of one prompt or completion."""
FULL_CREDIT = 1.0 - 1e-9


def is_correct(parts: Any) -> bool | None:
    """True when the 'correct' component gave full credit, None when there is no such component."""
    value = parts.get("correct") if isinstance(parts, dict) else None
    return None if not is_number(value) or not math.isfinite(value) else value >= FULL_CREDIT


def cut(text: Any) -> str:
    text = text if isinstance(text, str) else json.dumps(text) if text is not None else ""
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n[... {len(text) - MAX_TEXT} more characters]"


def rollout_files(run_dir: Path) -> list[tuple[int, Path]]:
    files = []
    for path in (run_dir / "rollouts").glob("step_*.jsonl") if (run_dir / "rollouts").is_dir() else []:
        match = re.fullmatch(r"step_(\d+)\.jsonl", path.name)
        if match:
            files.append((int(match.group(1)), path))
    return sorted(files)


def evenly(items: list[Any], k: int) -> list[Any]:
    """k items spread evenly over the list (all of it when k >= len)."""
    if k >= len(items):
        return list(items)
    return [items[int(i * len(items) / k)] for i in range(k)]


def select_samples(run_dir: Path, max_samples: int, notes: list[str]) -> list[dict[str, Any]]:
    """All samples of the newest steps (up to half the cap; at least the newest step, itself capped) and an even
    draw from the older steps for the rest, newest first. Says on the page when anything was left out."""
    files = rollout_files(run_dir)
    if files and max_samples == 0:
        notes.append("traces left out (--max-samples 0)")
        return []
    if not files:
        notes.append(
            "no rollouts/step_*.jsonl: no traces to browse (log_rollouts_every=0, or the run stopped "
            "before its first step finished)"
        )
        return []
    per_file = [(step, read_jsonl(path, notes)) for step, path in reversed(files)]
    total = sum(len(rows) for _, rows in per_file)
    recent: list[dict[str, Any]] = []
    n_recent = 0
    for _, rows in per_file:
        if recent and len(recent) + len(rows) > max_samples // 2:
            break
        recent += rows[:max_samples]
        n_recent += 1
    older = per_file[n_recent:]
    budget = max_samples - len(recent)
    drawn: list[dict[str, Any]] = []
    if older and budget > 0:
        chosen = evenly(older, budget)
        share = max(1, budget // len(chosen))
        drawn = [row for _, rows in chosen for row in evenly(rows, share)]
    if len(recent) + len(drawn) < total:
        notes.append(
            f"traces: {total} samples in {len(files)} logged steps; embedded all {len(recent)} of the "
            f"newest {n_recent} step(s) and {len(drawn)} drawn evenly from the {len(older)} older ones "
            f"(raise the cap with `reasonrl report RUN_DIR --max-samples N`)"
        )
    return recent + drawn


def compact_samples(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(prompts, samples): each distinct prompt stored once (a group's G samples share it)."""
    prompts: dict[str, int] = {}
    samples = []
    for row in rows:
        prompt = cut(row.get("prompt"))
        parts = row.get("reward_parts")
        parts = parts if isinstance(parts, dict) else {}
        samples.append(
            clean(
                {
                    "step": row.get("step"),
                    "group": row.get("group"),
                    "id": str(row.get("id", "")),
                    "prompt": prompts.setdefault(prompt, len(prompts)),
                    "answer": cut(row.get("answer")),
                    "completion": cut(row.get("completion")),
                    "reward": row.get("reward") if is_number(row.get("reward")) else None,
                    "parts": {k: v for k, v in parts.items() if is_number(v) or v is None},
                    "tokens": row.get("completion_tokens"),
                    "truncated": bool(row.get("truncated")),
                    "correct": is_correct(parts),
                    "errors": [cut(e) for e in errors_of(row)],
                }
            )
        )
    return list(prompts), samples


def errors_of(row: dict[str, Any]) -> list[Any]:
    errors = row.get("errors")
    return errors if isinstance(errors, list) else [errors] if errors else []
