"""Metric sinks and console progress. One dict[str, float] per step, namespaced keys (rollout/reward, loss/pg).

metrics.jsonl (JsonlSink) is always written; `log.sinks` adds TensorBoard event files and a Weights & Biases run
(offline by default), each behind the same log/close interface, all driven by one MetricSinks in train().
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from reasonrl.utils.files import atomic_write_text


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


class TensorBoardSink:
    """Scalars into <run>/tensorboard through torch's SummaryWriter (needs the tensorboard package). A resumed run
    purges the events after its checkpoint, as metrics.jsonl is truncated, so no step is drawn twice."""

    def __init__(self, log_dir: Path, start: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=start + 1 if start else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in finite_scalars(metrics).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A Weights & Biases run in <run>/wandb, offline unless log.wandb_mode=online. Its id is kept in
    <run>/wandb/run_id, so a resumed run continues the same W&B run."""

    def __init__(self, run_dir: Path, name: str, project: str, mode: str, config: dict[str, Any]) -> None:
        import wandb

        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        id_file = run_dir / "wandb" / "run_id"
        if not id_file.is_file():
            id_file.write_text(uuid.uuid4().hex[:12])
        self.run = wandb.init(
            project=project,
            name=name,
            dir=str(run_dir),
            mode=mode,
            config=config,
            id=id_file.read_text().strip(),
            resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )  # our progress owns the console

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(finite_scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


def finite_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (TensorBoard and W&B draw NaN badly; metrics.jsonl keeps a null)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class MetricSinks:
    """metrics.jsonl plus the sinks named in log.sinks; log() and close() go to each. A missing package is a
    ValueError naming the install command, raised before the first step."""

    def __init__(self, run_dir: Path, cfg: Any, start: int) -> None:
        """cfg is the RunConfig (its log section, name and the whole config for W&B); start the first step."""
        for sink, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
            if sink in cfg.log.sinks and importlib.util.find_spec(module) is None:
                raise ValueError(
                    f"log.sinks has {sink!r} but the {module} package is not installed; "
                    f"`pip install {module}` or drop it from log.sinks"
                )
        self.sinks: list[Any] = [JsonlSink(run_dir / "metrics.jsonl")]
        if "tensorboard" in cfg.log.sinks:
            self.sinks.append(TensorBoardSink(run_dir / "tensorboard", start))
        if "wandb" in cfg.log.sinks:
            from reasonrl.utils.config_io import config_to_dict

            self.sinks.append(
                WandbSink(run_dir, cfg.name, cfg.log.wandb_project, cfg.log.wandb_mode, config_to_dict(cfg))
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.log(step, metrics)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only lines with step <= last_step (a resumed run re-logs the steps after its checkpoint); a line
    torn by a kill or a full disk is dropped. Replaced atomically: a kill meanwhile loses nothing."""
    if not path.exists():
        return
    kept = [json.dumps(row) for row in read_metrics(path) if row.get("step", 0) <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a line that does not parse (torn by a kill or a full disk) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


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
