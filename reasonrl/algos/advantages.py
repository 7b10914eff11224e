"""Advantage estimators: fn(batch, cfg) -> (B, T) advantages, zero where mask is False.

grpo (DeepSeekMath, arXiv:2402.03300): A_i = (r_i - mean_group r) / (std_group r + eps) for every token of o_i.
The std is Bessel-corrected (torch.std), as in TRL and verl: rewards (1,0,1,0) give +-0.866, not +-1.
A group of one sample has no baseline: mean 0 and std 1, so its advantage is its raw reward (verl's rule).
"""
from __future__ import annotations

from torch import Tensor

from reasonrl.config import AlgoConfig
from reasonrl.registry import Registry
from reasonrl.types import Batch

ADVANTAGES: Registry = Registry("advantage estimator")


def group_normalise(rewards: Tensor, group_size: int, scale_by_std: bool, eps: float) -> Tensor:
    """(B,) rewards -> (B,) advantages, normalised within contiguous groups of group_size."""
    r = rewards.float().view(-1, group_size)                                     # (P, G)
    if group_size == 1:
        return r.view(-1)
    adv = r - r.mean(dim=1, keepdim=True)                                        # (P, G)
    if scale_by_std:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)                           # (P, G)
    return adv.view(-1)                                                          # (B,)


@ADVANTAGES.register("grpo")
def grpo(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """GRPO outcome supervision; cfg.scale_by_std=False gives Dr.GRPO's advantage (arXiv:2503.20783)."""
    adv = group_normalise(batch.rewards, batch.group_size, cfg.scale_by_std, cfg.std_eps)  # (B,)
    return adv[:, None] * batch.mask                                             # (B, T)
