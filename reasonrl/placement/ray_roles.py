"""The driver's side of placement=ray: start or join a Ray cluster, and drive the rollout actors (RolloutPool)
and the learner ranks (RayLearners) with the methods the controller calls on the local roles.

Faults: a rollout actor that dies, or reports no progress for placement.stall_timeout_s (the watchdog names its
phase), is replaced by a fresh one that gets the current weights and rolls out the same share again (the same
per-prompt seeds: the batch is what it would have been). A learner rank that dies stops the run at once
(RunFailure; the last checkpoint stays) instead of leaving the other ranks waiting in a collective.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig
from reasonrl.errors import RunFailure
from reasonrl.evaluate import EvalResult
from reasonrl.roles import sample_step
from reasonrl.update import split_rows

Log = Callable[[str], None]
POLL_S = 2.0
"""How often the watchdog asks the rollout actors that owe a result for their status."""


def start_ray(cfg: RunConfig, log: Log) -> bool:
    """Connect to placement.address, or start a local cluster (empty address) sized for the actors. Returns
    whether this process started it. A cluster without the CPUs or GPUs the actors ask for is refused here (Ray
    would wait for them forever)."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "placement.name=ray needs Ray: pip install 'reasonrl[ray]' (or pip install ray==2.60.0)"
        ) from None
    p = cfg.placement
    if ray.is_initialized():
        started = False
    elif p.address:
        ray.init(address=p.address, log_to_driver=False, logging_level=logging.ERROR)
        started = False
    else:
        package_root = str(Path(__file__).resolve().parents[2])  # actors import this checkout's reasonrl
        path = os.pathsep.join(x for x in (package_root, os.environ.get("PYTHONPATH", "")) if x)
        ray.init(
            num_cpus=max(os.cpu_count() or 1, math.ceil(sum(cpus for cpus, _ in shapes(cfg)))),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
        started = True
    have = ray.cluster_resources()
    need = {"CPU": sum(cpus for cpus, _ in shapes(cfg)), "GPU": sum(gpus for _, gpus in shapes(cfg))}
    for what, amount in need.items():
        if amount > have.get(what, 0.0) + 1e-9:
            raise ValueError(
                f"placement: {p.rollout_workers} rollout workers and {p.learners} learners ask for {amount:g} "
                f"{what} but the Ray cluster has {have.get(what, 0.0):g}; add nodes, or lower placement.rollout_workers"
                f"/placement.learners/placement.cpus_per_actor/placement.gpus_per_*"
            )
    where = p.address or "a local Ray cluster"
    log(f"placement=ray on {where}: {p.rollout_workers} rollout workers, {p.learners} learners (actor logs: /tmp/ray)")
    return started


def shapes(cfg: RunConfig) -> list[tuple[float, float]]:
    """The (CPUs, GPUs) each actor asks Ray for, in bundle order: learner ranks, then rollout workers. A GPU count
    left null is 1 when model.device is cuda, else 0."""
    p, cuda = cfg.placement, float(cfg.model.device.startswith("cuda"))
    learner = (p.cpus_per_actor, cuda if p.gpus_per_learner is None else p.gpus_per_learner)
    worker = (p.cpus_per_actor, cuda if p.gpus_per_worker is None else p.gpus_per_worker)
    return [learner] * p.learners + [worker] * p.rollout_workers


def reserve(cfg: RunConfig) -> Any:
    """One placement group for every actor, bundle k for the k-th of shapes(cfg) (a restarted rollout worker takes
    its old bundle back). Reserved all at once or not at all; a group the cluster cannot place within
    placement.stall_timeout_s (no node has a bundle's CPUs/GPUs, or a STRICT_* strategy cannot hold) is refused
    with what it asked for, instead of actors waiting forever."""
    from ray.util.placement_group import placement_group, remove_placement_group

    p = cfg.placement
    wanted = [{"CPU": cpus, "GPU": gpus} for cpus, gpus in shapes(cfg)]
    bundles = [{k: v for k, v in b.items() if v > 0} or {"CPU": 0.01} for b in wanted]  # none may be empty
    group = placement_group(bundles, strategy=p.strategy)
    if not group.wait(timeout_seconds=p.stall_timeout_s):
        remove_placement_group(group)
        raise ValueError(
            f"placement: Ray could not place {len(bundles)} bundles (learner {wanted[0]}, worker {wanted[-1]}, "
            f"strategy {p.strategy}) within {p.stall_timeout_s:g} s (placement.stall_timeout_s); each bundle must "
            "fit one node: add nodes, or lower placement.cpus_per_actor/placement.gpus_per_*, or use "
            "placement.strategy=PACK"
        )
    return group


def placed(cfg: RunConfig, group: Any, bundle: int) -> dict[str, Any]:
    """Ray options of the actor in the placement group's bundle: its CPUs and GPUs, and the bundle."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    cpus, gpus = shapes(cfg)[bundle]
    strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle)
    return {"num_cpus": cpus, "num_gpus": gpus, "scheduling_strategy": strategy}


def wait_all(refs: list[Any], on_error: Callable[[int, BaseException], None]) -> list[Any]:
    """The results of refs, in order; the first one to fail is handed to on_error(index, error) at once (the
    others may be waiting on it in a collective), which must raise."""
    import ray

    index = {ref: i for i, ref in enumerate(refs)}
    out: list[Any] = [None] * len(refs)
    pending = list(refs)
    while pending:
        (ready,), pending = ray.wait(pending, num_returns=1)
        try:
            out[index[ready]] = ray.get(ready)
        except Exception as e:  # RayActorError, or the rank's own exception
            on_error(index[ready], e)
            raise
    return out


class RayLearners:
    """placement.learners learner ranks as one Learner: step, weights, checkpoint tensors, score."""

    def __init__(self, cfg: RunConfig, group: Any) -> None:
        import ray

        from reasonrl.model import load_tokenizer
        from reasonrl.placement.ray_actors import LearnerActor

        n, self.cfg = cfg.placement.learners, cfg
        self.actors = [
            LearnerActor.options(**placed(cfg, group, rank)).remote(cfg, rank, n)  # type: ignore[attr-defined]
            for rank in range(n)
        ]
        address = ray.get(self.actors[0].endpoint.remote()) if n > 1 else ""
        self.pids = self._all([a.start.remote(address, cfg.placement.stall_timeout_s) for a in self.actors], "start")
        self.tokenizer = load_tokenizer(cfg.model)
        self.version = 0
        self.policy = None  # the policy lives in the actors

    def _all(self, refs: list[Any], what: str) -> list[Any]:
        def fail(rank: int, error: BaseException) -> None:
            import ray

            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RunFailure(
                f"learner rank {rank} failed in {what} ({type(error).__name__}: {first[:300]}); every learner "
                "was stopped, the last checkpoint is kept: fix the cause and continue with --resume"
            ) from error

        return wait_all(refs, fail)

    def step(self, batch: Any) -> dict[str, float]:
        import ray

        ref = ray.put(batch)
        metrics = self._all([a.step.remote(ref) for a in self.actors], "update")[0]
        self.version += batch is not None
        return metrics

    def weights(self, device: Any = None) -> Any:
        """The current policy as an object-store reference: the rollout actors fetch it themselves."""
        return self.actors[0].weights.remote()

    def state_dict(self) -> dict[str, Any]:
        import ray

        return ray.get(self.actors[0].state_dict.remote())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._all([a.load_state_dict.remote(state) for a in self.actors], "load")
        self.version = int(state.get("version", state.get("step", 0)))

    def save(self, path: Path) -> None:
        import ray

        from reasonrl.placement.ray_actors import write_files

        write_files(path, ray.get(self.actors[0].save_files.remote()))

    def load(self, path: Path) -> None:
        from reasonrl.placement.ray_actors import read_files

        files = {k: v for k, v in read_files(path).items() if not k.startswith(("trainer_state", "rng", "inflight"))}
        self._all([a.load_files.remote(files) for a in self.actors], "load")

    def save_adapter(self, path: Path) -> None:
        import ray

        from reasonrl.placement.ray_actors import write_files

        path.mkdir(parents=True, exist_ok=True)
        write_files(path, ray.get(self.actors[0].adapter_files.remote()))

    def score(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        import ray

        return ray.get(self.actors[0].score.remote(sequences, starts))

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)


class RolloutPool:
    """placement.rollout_workers rollout actors as one RolloutWorker: every round is split into contiguous shares
    of prompts, one per actor, and put back together in order. The watchdog and the restarts live here."""

    def __init__(self, cfg: RunConfig, log: Log, learner_pids: list[int], group: Any) -> None:
        import ray

        self.cfg, self.log, self.learner_pids, self.group = cfg, log, learner_pids, group
        self.run_dir: Path | None = None
        self.actors = [self._make(i) for i in range(cfg.placement.rollout_workers)]
        self.pids = ray.get([a.pid.remote() for a in self.actors])
        self.pad_id: int = ray.get(self.actors[0].pad_id.remote())
        self.latest: Any = None  # the last weights pushed: a restarted actor gets them
        self.version: int | None = None
        self.restarts = 0
        self.stalled: dict[int, str] = {}

    def _make(self, i: int) -> Any:
        from reasonrl.placement.ray_actors import RolloutActor

        options = placed(self.cfg, self.group, self.cfg.placement.learners + i)
        return RolloutActor.options(**options).remote(self.cfg, i)  # type: ignore[attr-defined]

    def _write_pids(self) -> None:
        """RUN_DIR/actors.json: the pids of the rollout actors and learner ranks (to look at, or kill, from outside)."""
        if self.run_dir is not None and self.run_dir.is_dir():
            from reasonrl.utils.files import atomic_write_text

            pids = {"rollout_workers": self.pids, "learners": self.learner_pids}
            atomic_write_text(self.run_dir / "actors.json", json.dumps(pids))

    def attach(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._write_pids()

    def sample(self, step: int) -> tuple[Any, dict[str, float]]:
        before = self.restarts
        collected, timings = sample_step(self.cfg, step, self.sample_round)
        return collected, timings | {"restarts": float(self.restarts - before)}

    def sample_round(self, step: int, attempt: int, n: int) -> tuple[list[Any], dict[str, float]]:
        """Prompts 0..n-1 of the round, split over the actors; dead or stalled actors replaced and re-run."""
        import ray
        from ray.exceptions import RayActorError

        shares = [(s.start, s.stop) for s in split_rows(n, len(self.actors))]
        refs = {self.actors[i].sample_round.remote(step, attempt, n, share): i for i, share in enumerate(shares)}
        results: dict[int, tuple[list[Any], dict[str, float]]] = {}
        restarts_here = 0
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=min(POLL_S, self.cfg.placement.stall_timeout_s))
            if not ready:
                self._watch(refs)
                continue
            i = refs.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except RayActorError as e:
                restarts_here += 1
                reason = self.stalled.pop(i, None) or f"died ({type(e).__name__})"
                self._restart(i, reason, step, restarts_here)
                refs[self.actors[i].sample_round.remote(step, attempt, n, shares[i])] = i
        trajectories = [t for i in range(len(shares)) for t in results[i][0]]
        timings = {k: max(results[i][1].get(k, 0.0) for i in results) for k in ("generate", "reward")}
        return trajectories, timings  # wall time of the slowest share: the actors run side by side

    def _watch(self, refs: dict[Any, int]) -> None:
        """Kill the actors that owe a result and have not moved for placement.stall_timeout_s (named in the log)."""
        import ray

        limit = self.cfg.placement.stall_timeout_s
        for i in set(refs.values()) - set(self.stalled):
            try:
                status = ray.get(self.actors[i].status.remote(), timeout=POLL_S)
            except Exception:  # dying: its result will say so
                continue
            if status["quiet_s"] > limit:
                self.stalled[i] = (
                    f"made no progress for {status['quiet_s']:.0f} s (placement.stall_timeout_s={limit:g}) in phase "
                    f"{status['phase']} of step {status['step'] + 1 if status['step'] is not None else '?'}"
                )
                ray.kill(self.actors[i], no_restart=True)

    def _restart(self, i: int, reason: str, step: int, count: int) -> None:
        import ray

        limit = self.cfg.placement.max_restarts
        if count > limit:
            raise RunFailure(
                f"rollout worker {i} {reason}, after {limit} restarts in step {step + 1} "
                f"(placement.max_restarts={limit}); the last checkpoint is kept: fix the cause and --resume"
            )
        old = self.pids[i]
        self.actors[i] = self._make(i)
        if self.latest is not None:
            ray.get(self.actors[i].update_weights.remote(self.latest))
        self.pids[i] = ray.get(self.actors[i].pid.remote())
        self.restarts += 1
        self._write_pids()
        self.log(
            f"rollout worker {i} (pid {old}) {reason}; restarted it as pid {self.pids[i]} with policy version "
            f"{self.version}, re-running its share of step {step + 1}"
        )

    def update_weights(self, update: Any) -> None:
        import ray

        self.latest = update
        versions = ray.get([a.update_weights.remote(update) for a in self.actors])
        self.version = versions[0]

    def evaluate(self, examples: list[Any], task: str | None = None, report: Any = None) -> EvalResult:
        import ray

        return ray.get(self.actors[0].evaluate.remote(examples, task))

    def probe(self, prompts: list[list[int]], params: Any, seed: int) -> Any:
        import ray

        return ray.get(self.actors[0].probe.remote(prompts, params, seed))

    def sleep(self) -> None:
        """Each actor holds its own device: nothing to release around the update."""

    def wake(self) -> None:
        pass

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 (already dead: nothing to close)
                pass
            ray.kill(actor, no_restart=True)


def ray_roles(cfg: RunConfig, log: Log) -> tuple[RayLearners, RolloutPool, Callable[[], None]]:
    """Start (or join) the cluster and the actors; returns the learners, the rollout pool and a close()."""
    import ray

    from ray.util.placement_group import remove_placement_group

    started = start_ray(cfg, log)
    t0 = time.time()
    group = reserve(cfg)
    learners = RayLearners(cfg, group)
    pool = RolloutPool(cfg, log, learners.pids, group)
    log(f"actors up in {time.time() - t0:.0f} s: rollout worker pids {pool.pids}, learner pids {learners.pids}")

    def close() -> None:
        pool.close()
        learners.close()
        remove_placement_group(group)
        if started:
            ray.shutdown()

    return learners, pool, close
