"""Reading a run directory leniently: JSONL with half-written lines, a missing or broken summary.json or
config.yaml, NaN anywhere. Whatever is wrong becomes a note shown on the report page."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

import yaml


def clean(obj: Any) -> Any:
    """obj with every NaN/inf replaced by None (JSON has no NaN), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; unreadable lines (a run killed mid-write) are skipped and noted."""
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        notes.append(f"{path.name}: skipped {bad} unreadable line(s) (a run killed mid-write leaves one)")
    return rows


def is_number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_summary(run_dir: Path, notes: list[str]) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        notes.append(f"summary.json unreadable ({e}); before/after table left out")
        return None
    return summary if isinstance(summary, dict) else None


def load_config_text(run_dir: Path, notes: list[str]) -> tuple[str, dict[str, Any]]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        notes.append("no config.yaml in the run directory")
        return "", {}
    text = path.read_text(errors="replace")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        config = None
    return text, config if isinstance(config, dict) else {}
