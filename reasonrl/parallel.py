"""Data parallelism for the learner: M ranks (torch.distributed; gloo on a CPU, NCCL on GPUs) hold the same
policy, each runs its share of a batch's micro-batches, and one all-reduce of the gradient per optimizer step
makes every rank take the same step. Normalisers are those of the whole batch (each rank sees the whole batch
and skips the micro-batches of other ranks), so the loss and the gradient equal the single-process ones up to
the order of floating-point sums.

    dp = DataParallel.start(rank, world, address)      # in each learner process
    update(policy, optimizer, batch, loss_fn, cfg, kl, dp=dp)
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class DataParallel:
    rank: int
    world: int

    @classmethod
    def start(cls, rank: int, world: int, address: str, timeout_s: float = 600.0) -> DataParallel:
        """Join the process group at address (tcp://host:port); NCCL when CUDA is there, else gloo. timeout_s:
        a collective that waits longer (a rank died) raises instead of hanging."""
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(
            backend, init_method=address, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
        )
        return cls(rank, world)

    def mine(self, index: int) -> bool:
        """Whether micro-batch `index` of a pass is this rank's (round robin)."""
        return index % self.world == self.rank

    def sum_(self, tensor: Tensor) -> Tensor:
        """All-reduce (sum) in place over the ranks; returns the tensor."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients over the ranks in one flat all-reduce (a rank without micro-batches adds zeros)."""
        params = list(params)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = self.sum_(torch.cat([p.grad.reshape(-1) for p in params]))  # type: ignore[union-attr]
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
            offset += n

    def sum_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per-key sums of the ranks' metric dicts (each rank's share of a weighted mean: their sum is the mean)."""
        gathered: list[dict[str, float] | None] = [None] * self.world
        dist.all_gather_object(gathered, metrics)
        out: dict[str, float] = {}
        for part in gathered:
            for key, value in (part or {}).items():
                out[key] = out.get(key, 0.0) + value
        return out

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
