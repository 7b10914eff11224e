"""Metric sinks and console progress. One dict[str, float] per step, namespaced keys (rollout/reward, loss/pg)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any


class JsonlSink:
    """Appends one JSON line per step to metrics.jsonl (flushed, so a killed run keeps what it logged)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("a")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self.file.write(json.dumps({"step": step, **clean}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only lines with step <= last_step (a resumed run re-logs the steps after its checkpoint)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= last_step]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Progress:
    """A progress bar with live metrics on a terminal (tqdm), plain log lines with --quiet or when piped."""

    def __init__(self, total: int, initial: int, desc: str, quiet: bool) -> None:
        self.quiet = quiet or not sys.stderr.isatty()
        self.start = time.time()
        self.bar = None
        if not self.quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
        self.total = total

    def update(self, step: int, shown: dict[str, float]) -> None:
        text = " ".join(f"{k}={v:.3g}" for k, v in shown.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)
        else:
            print(f"step {step + 1}/{self.total} {text} elapsed={time.time() - self.start:.0f}s", flush=True)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
