"""Where the roles run, behind one controller (reasonrl/train.py):

    local  the rollout worker and the learner in this process (reasonrl/roles.py)
    ray    placement.rollout_workers actors that each roll out a share of every round, and placement.learners
           data-parallel learner actors (reasonrl/placement/ray_roles.py); weights travel through Ray's object store

Both hand the controller a learner and a worker with the same methods, and an AheadSampler that keeps
algo.max_staleness steps in flight: the batch of step s is sampled by the policy after step s - max_staleness.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

INFLIGHT_FILE = "inflight.pt"
"""In a checkpoint of an asynchronous run: the batches sampled ahead of it (resumed as they were)."""


class AheadSampler:
    """Steps submitted ahead of the one the learner trains. Sampling and weight pushes run in submission order:
    in this thread (local placement, nothing overlaps) or in one background thread (ray: the actors sample the next
    steps while the learner trains). Either way step t's batch is sampled by the weights pushed before it was
    submitted, so a run's batches do not depend on timing."""

    def __init__(self, sample: Callable[[int], Any], push: Callable[[Any], None], background: bool) -> None:
        self.sample, self.push_fn = sample, push
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="sampler") if background else None
        self.pending: dict[int, Future] = {}
        self.pushes: list[Future] = []

    def _run(self, fn: Callable[..., Any], *args: Any) -> Future:
        if self.executor is not None:
            return self.executor.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as e:  # raised at collect(), like the background thread's errors
            done.set_exception(e)
        return done

    def submit(self, step: int) -> None:
        if step not in self.pending:
            self.pending[step] = self._run(self.sample, step)

    def push(self, weights: Any) -> None:
        """Serve these weights to every step submitted from now on."""
        self.pushes.append(self._run(self.push_fn, weights))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn after everything submitted so far (the weight-sync check sees the pushed version)."""
        return self._run(fn).result()

    def collect(self, step: int) -> Any:
        """The step's sample (waits for it); raises what sampling or an earlier push raised."""
        for push in self.pushes:
            push.result()
        self.pushes = [p for p in self.pushes if not p.done()]
        return self.pending.pop(step).result()

    def save(self, path: Path) -> None:
        """The steps in flight, into a checkpoint directory (waits for them): a resumed run trains on these."""
        if self.pending:
            torch.save({step: f.result() for step, f in sorted(self.pending.items())}, path / INFLIGHT_FILE)

    def restore(self, path: Path) -> None:
        if (path / INFLIGHT_FILE).is_file():
            for step, sample in torch.load(path / INFLIGHT_FILE, weights_only=False).items():
                done: Future = Future()
                done.set_result(sample)
                self.pending[step] = done

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def make_roles(cfg: Any, train: list[Any], log: Callable[[str], None]) -> tuple[Any, Any, Callable[[], None]]:
    """(learner, worker, close) for cfg.placement: the roles of reasonrl/roles.py in this process, or their Ray
    counterparts (RayLearners, RolloutPool) with the same methods."""
    if cfg.placement.name == "ray":
        from reasonrl.placement.ray_roles import ray_roles

        return ray_roles(cfg, log)
    from reasonrl.roles import Learner, RolloutWorker

    learner = Learner(cfg)
    worker = RolloutWorker(cfg, learner.tokenizer, train, shared=learner.policy)
    return learner, worker, worker.close
