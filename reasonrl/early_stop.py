"""Stopping a run at its evaluations: early stopping on a metric (eval.early_stop) and any other watcher, such
as a sweep's pruner, through one interface: watch(step, metrics) -> a reason to stop, or None.

    stopper = EarlyStop(cfg.eval.early_stop, run_dir, save_adapter)   # a no-op when metric is None
    reason = stopper.watch(step, metrics)   # after each evaluation; saves RUN_DIR/adapter_best on a new best
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonrl.config.optim import EarlyStopConfig
from reasonrl.utils.files import write_dir_atomically

Watcher = Callable[[int, dict[str, float]], str | None]
"""Called after each evaluation with (step, the step's metrics); a string stops the run, naming why."""

BEST_DIR = "adapter_best"


class EarlyStop:
    """Patience on one evaluated metric; checkpointed through state()/restore()."""

    def __init__(self, cfg: EarlyStopConfig, run_dir: Path, save: Callable[[Path], Any] | None) -> None:
        self.cfg, self.run_dir, self.save = cfg, run_dir, save
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0  # evaluations in a row without an improvement

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        gain = value - self.best if self.cfg.mode == "max" else self.best - value
        return gain > self.cfg.min_delta

    def watch(self, step: int, metrics: dict[str, float]) -> str | None:
        name = self.cfg.metric
        if name is None:
            return None
        if name not in metrics:
            logged = ", ".join(sorted(k for k in metrics if k.startswith(("eval/", "forget/"))))
            raise ValueError(f"eval.early_stop.metric={name!r} is not logged at evaluations; logged: {logged}")
        value = float(metrics[name])
        if self.improved(value):
            self.best, self.best_step, self.stale = value, step, 0
            if self.cfg.keep_best and self.save is not None:
                write_dir_atomically(self.run_dir / BEST_DIR, self.save)
            return None
        self.stale += 1
        if self.stale < self.cfg.patience:
            return None
        return (
            f"early stop: {name} did not improve by more than {self.cfg.min_delta:g} for {self.stale} evaluations "
            f"(best {self.best:.4g} at step {self.best_step})"
        )

    def summary(self) -> dict[str, Any] | None:
        if self.cfg.metric is None or self.best is None:
            return None
        kept = self.cfg.keep_best and self.save is not None
        return {"metric": self.cfg.metric, "best": self.best, "step": self.best_step} | (
            {"adapter": BEST_DIR} if kept else {}
        )

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "stale": self.stale}

    def restore(self, state: dict[str, Any]) -> None:
        self.best, self.best_step, self.stale = state.get("best"), state.get("best_step"), state.get("stale", 0)
