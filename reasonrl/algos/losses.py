"""Policy losses: fn(logp, old_logp, adv, mask, cfg) -> (per-token loss (B, T), metrics), and `aggregate`.

ppo_clip (arXiv:1707.06347; DAPO clip-higher arXiv:2503.14476):
    rho = exp(logp - old_logp);  L = max(-rho A, -clip(rho, 1 - eps_low, 1 + eps_high) A)
With one update per rollout batch old_logp = logp.detach(): rho = 1, the clip is inert and the gradient is
the plain policy gradient -A grad logp.
"""
from __future__ import annotations

import torch
from torch import Tensor

from reasonrl.config import PPOClipLoss
from reasonrl.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss")


def masked_mean(x: Tensor, mask: Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1))


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor,
             cfg: PPOClipLoss) -> tuple[Tensor, dict[str, float]]:
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))                      # (B, T)
    unclipped = -adv * ratio                                                     # (B, T)
    clipped = -adv * ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high)        # (B, T)
    loss = torch.maximum(unclipped, clipped)                                     # (B, T)
    with torch.no_grad():
        metrics = {"clip_frac": masked_mean((clipped > unclipped).float(), mask),
                   "ratio_mean": masked_mean(ratio, mask)}
    return loss * mask, metrics


def aggregate(per_token: Tensor, mask: Tensor, mode: str, *, batch_tokens: int, batch_seqs: int,
              max_len: int) -> Tensor:
    """Reduce a (b, T) per-token loss of a micro-batch to its share of the whole batch's loss.

    The normalisers come from the whole batch, so summing the micro-batches' results gives exactly the
    full-batch value (gradient accumulation without bias):
      token-mean               sum_{i,t} m L / batch_tokens                     (DAPO, verl default)
      seq-mean-token-mean      sum_i (sum_t m L / |o_i|) / batch_seqs            (GRPO paper)
      seq-mean-token-sum       sum_i sum_t m L / batch_seqs
      seq-mean-token-sum-norm  sum_{i,t} m L / (batch_seqs * max_len)            (Dr.GRPO's constant, as TRL)
    """
    masked = per_token * mask                                                    # (b, T)
    if mode == "token-mean":
        return masked.sum() / max(batch_tokens, 1)
    if mode == "seq-mean-token-mean":
        lengths = mask.sum(-1).clamp(min=1)                                      # (b,)
        return (masked.sum(-1) / lengths).sum() / batch_seqs
    if mode == "seq-mean-token-sum":
        return masked.sum() / batch_seqs
    if mode == "seq-mean-token-sum-norm":
        return masked.sum() / (batch_seqs * max_len)
    raise ValueError(f"unknown loss aggregation {mode!r}; use token-mean, seq-mean-token-mean, "
                     "seq-mean-token-sum or seq-mean-token-sum-norm")
