"""The Ray actors of placement=ray: a rollout worker and a learner rank, each wrapping the role of
reasonrl/roles.py in its own process. They are driven by reasonrl/placement/ray_roles.py."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from reasonrl.config import RunConfig
from reasonrl.utils.host import configure_host


def read_files(root: Path) -> dict[str, bytes]:
    """Every file under root by relative path: a checkpoint's tensors as a value that can cross machines."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


@ray.remote(concurrency_groups={"status": 1})  # type: ignore[call-overload]
class RolloutActor:
    """A RolloutWorker (engine, environment, reward workers) in its own process. status() answers while a call
    runs (its own concurrency group), so the controller's watchdog can see which phase a slow worker is in."""

    def __init__(self, cfg: RunConfig, index: int) -> None:
        from reasonrl.model import load_tokenizer
        from reasonrl.roles import RolloutWorker
        from reasonrl.tasks import load_task

        configure_host(cfg.threads, cfg.keeps_freed_memory)
        self.index, self.phase, self.last = index, "starting", time.monotonic()
        self.step: int | None = None
        self.worker = RolloutWorker(cfg, load_tokenizer(cfg.model), load_task(cfg.task).train)
        engine, generate = self.worker.engine, self.worker.engine.generate

        def marked_generate(*args: Any, **kwargs: Any) -> Any:  # generation, then the environment's rewards
            self._mark("generate")
            try:
                return generate(*args, **kwargs)
            finally:
                self._mark("reward")

        engine.generate = marked_generate
        self._mark("idle")

    def _mark(self, phase: str) -> None:
        self.phase, self.last = phase, time.monotonic()

    def pid(self) -> int:
        return os.getpid()

    def sample_round(self, step: int, attempt: int, n: int, share: tuple[int, int]) -> Any:
        self.step = step
        try:
            return self.worker.sample_round(step, attempt, n, share)
        finally:
            self._mark("idle")

    def update_weights(self, update: Any) -> int | None:
        self._mark("sync")
        self.worker.update_weights(update)
        self._mark("idle")
        return self.worker.version

    def evaluate(self, examples: list[Any], task: str | None) -> Any:
        self._mark("evaluate")
        try:
            return self.worker.evaluate(examples, task)
        finally:
            self._mark("idle")

    def probe(self, prompts: list[list[int]], params: Any, seed: int) -> Any:
        return self.worker.probe(prompts, params, seed)

    def version(self) -> int | None:
        return self.worker.version

    def pad_id(self) -> int:
        return self.worker.pad_id

    @ray.method(concurrency_group="status")
    def status(self) -> dict[str, Any]:
        """Which phase the worker is in (generate, reward, sync, evaluate, idle), at which step, and the seconds
        since it last moved from one phase to the next."""
        return {"phase": self.phase, "step": self.step, "quiet_s": time.monotonic() - self.last, "pid": os.getpid()}

    def close(self) -> None:
        self.worker.close()


@ray.remote
class LearnerActor:
    """One data-parallel rank of the learner (reasonrl/parallel.py): the same policy on every rank, each
    running its share of the micro-batches; rank 0 hands out the weights and writes the checkpoints."""

    def __init__(self, cfg: RunConfig, rank: int, world: int) -> None:
        configure_host(cfg.threads, cfg.keeps_freed_memory)
        self.cfg, self.rank, self.world = cfg, rank, world
        self.learner: Any = None

    def endpoint(self) -> str:
        """tcp://<this node>:<a free port>, for the process group's rendezvous (rank 0)."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return f"tcp://{ray.util.get_node_ip_address()}:{port}"

    def start(self, address: str, timeout_s: float) -> int:
        from reasonrl.parallel import DataParallel
        from reasonrl.roles import Learner

        dp = DataParallel.start(self.rank, self.world, address, timeout_s) if self.world > 1 else None
        self.learner = Learner(self.cfg, dp)
        return os.getpid()

    def step(self, batch: Any) -> dict[str, float]:
        return self.learner.step(batch)

    def weights(self) -> Any:
        return self.learner.weights("cpu")

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state)

    def save_files(self) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory() as tmp:
            self.learner.save(Path(tmp))
            return read_files(Path(tmp))

    def load_files(self, files: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write_files(Path(tmp), files)
            self.learner.load(Path(tmp))

    def adapter_files(self) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory() as tmp:
            self.learner.policy.save_pretrained(tmp)
            return read_files(Path(tmp))

    def score(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        return self.learner.score(sequences, starts)

    def close(self) -> None:
        if self.learner is not None and self.learner.dp is not None:
            self.learner.dp.close()
