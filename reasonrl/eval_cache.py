"""The start model's evaluation, cached: runs of the same model, task and evaluation settings reuse it.

    cached = load(cfg)          # (result, extra metrics, seconds it took) or None
    store(cfg, result, extra, seconds)

The key hashes everything the evaluation depends on: model.* (path, dtype, the adapter it starts from, and the
size and time of their files), task.*, eval.*, the sampling limits, rewards.*, env.*, engine.*, the seed, the
thread count and reasonrl's version. The files live in <cache>/evals/<key>.json (REASONRL_CACHE moves the
cache, REASONRL_EVAL_CACHE just these files), written atomically. eval.before=auto reuses, always recomputes
(and refreshes the file), skip evaluates nothing at step 0. Runs with forget.enabled are not cached: their
step-0 measurement includes retention on other tasks and the KL to the base.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, cast

import reasonrl
from reasonrl.config import RunConfig
from reasonrl.utils.config_io import config_to_dict
from reasonrl.utils.files import atomic_write_text


def fingerprint(path: str | None) -> list[Any]:
    """Name, size and modification time of every file under a local model or adapter directory: a model
    retrained into the same directory gets another key."""
    if not path:
        return []
    if path.startswith("bundled:"):
        from reasonrl.model_files import bundled_model_dir

        root = bundled_model_dir()
    else:
        root = Path(path).expanduser()
    if not root.is_dir():
        return [path]
    return sorted(
        [str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns] for f in root.rglob("*") if f.is_file()
    )


def key_of(cfg: RunConfig) -> str:
    parts = {
        "model": config_to_dict(cfg.model),
        "files": [fingerprint(cfg.model.path), fingerprint(cfg.model.adapter)],
        "task": config_to_dict(cfg.task),
        "eval": config_to_dict(cfg.eval),
        "max_new_tokens": cfg.sampling.max_new_tokens,
        "top_p": cfg.sampling.top_p,
        "rewards": config_to_dict(cfg.rewards),
        "env": config_to_dict(cfg.env),
        "engine": config_to_dict(cfg.engine),
        "seed": cfg.seed,
        "threads": cfg.threads,
        "version": reasonrl.__version__,
    }
    cast(dict[str, Any], parts["eval"]).pop("before", None)
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def path_of(cfg: RunConfig) -> Path:
    from reasonrl.model_files import cache_dir

    root = Path(os.environ.get("REASONRL_EVAL_CACHE") or cache_dir() / "evals")
    return root / f"{key_of(cfg)}.json"


def cacheable(cfg: RunConfig) -> bool:
    return not cfg.forget.enabled


def load(cfg: RunConfig) -> tuple[dict[str, Any], dict[str, float], float] | None:
    """The cached evaluation of cfg's start model, or None (missing, unreadable or another version's)."""
    path = path_of(cfg)
    try:
        record = json.loads(path.read_text())
        return record["result"], record["extra"], float(record["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(cfg: RunConfig, result: dict[str, Any], extra: dict[str, float], seconds: float) -> Path:
    path = path_of(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        path,
        json.dumps(
            {"result": result, "extra": extra, "seconds": seconds, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        ),
    )
    return path
