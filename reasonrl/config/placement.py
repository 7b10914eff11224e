"""Config section placement.*: where the roles run (this process, or Ray actors on a cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PlacementConfig:
    name: Literal["local", "ray"] = "local"
    """local: the rollout worker and the learner live in this process. ray: rollout_workers actors (each with its
    own engine, environment and reward workers) and learners actors (torch.distributed data parallelism) on a
    Ray cluster; the controller loop is the same (docs/cluster.md)."""
    rollout_workers: int = 1
    """Rollout actors (ray): each rolls out its share of a step's prompts."""
    learners: int = 1
    """Learner actors (ray): data-parallel ranks, gloo on a CPU and NCCL on GPUs; the loss equals one learner's."""
    address: str = ""
    """Ray cluster to join: empty starts a local one in this process; `auto` or host:port joins one started with
    `ray start --head`."""
    stall_timeout_s: float = 600.0
    """A rollout actor that reports no progress for this long is named in the log (phase and step) and restarted."""
    max_restarts: int = 3
    """Restarts of rollout actors within one step before the run stops with the last checkpoint kept."""
    cpus_per_actor: float = 1.0
    """Ray CPU resources each actor asks for."""
    gpus_per_learner: float | None = None
    """Ray GPU resources per learner actor (None: 1 when model.device is cuda, else 0)."""
    gpus_per_worker: float | None = None
    """Ray GPU resources per rollout actor (None: 1 when model.device is cuda, else 0; a fraction shares one)."""
    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the actors' resource bundles (one placement group, reserved all at once): PACK fills as few
    nodes as possible, SPREAD spreads them; STRICT_* fail unless that can be done exactly."""

    def __post_init__(self) -> None:
        for key, value in {"rollout_workers": self.rollout_workers, "learners": self.learners}.items():
            if value < 1:
                raise ValueError(f"placement.{key} must be >= 1, got {value}")
        if self.stall_timeout_s <= 0 or self.max_restarts < 0 or self.cpus_per_actor < 0:
            raise ValueError(
                f"placement.stall_timeout_s must be > 0 and placement.max_restarts, placement.cpus_per_actor >= 0, "
                f"got {self.stall_timeout_s}, {self.max_restarts}, {self.cpus_per_actor}"
            )
        if self.name == "local" and (self.rollout_workers > 1 or self.learners > 1 or self.address):
            raise ValueError(
                f"placement.rollout_workers={self.rollout_workers}, placement.learners={self.learners} and "
                "placement.address need placement.name=ray (local runs one of each in this process)"
            )
