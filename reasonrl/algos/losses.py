"""Policy losses: fn(logp, old_logp, adv, mask, cfg) -> (per-token loss (B, T), metrics), and `aggregate`.
Selected by `algo.loss.name`; each takes its own frozen config (reasonrl/config/algo.py).

    ppo_clip   rho = exp(logp - old_logp); L = max(-rho A, -clip(rho, 1 - eps_low, 1 + eps_high) A)
               (PPO arXiv:1707.06347; DAPO clip-higher arXiv:2503.14476); dual-clip for A < 0: min(L, -c A)
               (arXiv:1912.09729)
    gspo       s_i = exp(mean_t(logp - old_logp)) one ratio per sequence, clipped at 3e-4/4e-4 (arXiv:2507.18071)
    cispo      L = -sg(min(rho, cap)) A logp: every token keeps a gradient (MiniMax-M1 arXiv:2506.13585)
    reinforce  L = -rho A, no clipping (on-policy: -A grad logp)

With one update per rollout batch old_logp = logp.detach(): rho = 1, clips are inert and every loss gives the
plain policy gradient -A grad logp.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reasonrl.config import CISPOLoss, GSPOLoss, PPOClipLoss, ReinforceLoss
from reasonrl.registry import Registry

POLICY_LOSSES: Registry = Registry("policy loss")


def masked_mean(x: Tensor, mask: Tensor) -> float:
    return float((x * mask).sum() / mask.sum().clamp(min=1))


def importance_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """(B, T) rho = exp(logp - old_logp), the log-ratio clamped to [-20, 20] as verl does."""
    return torch.exp((logp - old_logp).clamp(-20.0, 20.0))  # (B, T)


def clipped_surrogate(ratio: Tensor, adv: Tensor, low: float, high: float) -> tuple[Tensor, Tensor]:
    """max(-ratio A, -clip(ratio, 1 - low, 1 + high) A) and where the clipped term won; (B, T) each."""
    unclipped = -adv * ratio  # (B, T)
    clipped = -adv * ratio.clamp(1.0 - low, 1.0 + high)  # (B, T)
    return torch.maximum(unclipped, clipped), clipped > unclipped  # (B, T), (B, T)


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: PPOClipLoss
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped surrogate, -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) per token (algo.loss.*)."""
    ratio = importance_ratio(logp, old_logp)  # (B, T)
    loss, clipped = clipped_surrogate(ratio, adv, cfg.clip_low, cfg.clip_high)  # (B, T)
    metrics = {"clip_frac": masked_mean(clipped.float(), mask), "ratio_mean": masked_mean(ratio.detach(), mask)}
    if cfg.clip_ratio_c is not None:  # dual-clip: a negative advantage's loss never exceeds -c A
        floor = -adv * cfg.clip_ratio_c  # (B, T)
        dual = (adv < 0) & (floor < loss)  # (B, T)
        loss = torch.where(dual, floor, loss)  # (B, T)
        metrics["dual_clip_frac"] = masked_mean(dual.float(), mask)
    return loss * mask, metrics


@POLICY_LOSSES.register("gspo")
def gspo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: GSPOLoss) -> tuple[Tensor, dict[str, float]]:
    """GSPO-token (arXiv:2507.18071, as verl): log s_it = logp - sg(logp) + sg(mean_t(logp - old_logp)), so every
    token's ratio has the value of its sequence's s_i and the gradient s_i grad logp_t. With one advantage per
    sequence and seq-mean-token-mean aggregation (enforced by the config) this is sequence-level GSPO."""
    m = mask.float()  # (B, T)
    seq_log_ratio = ((logp - old_logp) * m).sum(-1) / m.sum(-1).clamp(min=1)  # (B,)
    log_s = logp - logp.detach() + seq_log_ratio.detach()[:, None]  # (B, T)
    ratio = torch.exp(log_s.clamp(max=10.0))  # (B, T)
    loss, clipped = clipped_surrogate(ratio, adv, cfg.clip_low, cfg.clip_high)  # (B, T)
    return loss * mask, {
        "clip_frac": masked_mean(clipped.float(), mask),
        "ratio_mean": masked_mean(ratio.detach(), mask),
    }


@POLICY_LOSSES.register("cispo")
def cispo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: CISPOLoss) -> tuple[Tensor, dict[str, float]]:
    """CISPO (MiniMax-M1, arXiv:2506.13585): gradient sg(min(rho, cap)) A grad logp on every token; unlike PPO a
    clipped token keeps its gradient, only its weight is capped. Written as -A * sg(min(rho, cap) / rho) * rho,
    which has that gradient and the value -A min(rho, cap) (-A on-policy)."""
    ratio = importance_ratio(logp, old_logp)  # (B, T)
    weight = (ratio.clamp(max=cfg.clip_high) / ratio).detach()  # (B, T)
    loss = -adv * weight * ratio  # (B, T)
    return loss * mask, {
        "clip_frac": masked_mean((ratio > cfg.clip_high).float(), mask),
        "ratio_mean": masked_mean(ratio.detach(), mask),
    }


@POLICY_LOSSES.register("reinforce")
def reinforce(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: ReinforceLoss
) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE with an importance ratio and no clipping (RLOO's update, arXiv:2402.14740): -rho A."""
    ratio = importance_ratio(logp, old_logp)  # (B, T)
    return -adv * ratio * mask, {"ratio_mean": masked_mean(ratio.detach(), mask)}


def tis_weights(old_logp: Tensor, sampler_logp: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling between the sampler and the trainer (Yao et al. 2025, verl `tis_imp_ratio`):
    (B, T) weights min(exp(old_logp - sampler_logp), cap), detached. They correct for the sampler (e.g. vLLM in
    bf16) and the trainer disagreeing on the rollout policy's probabilities."""
    return importance_ratio(old_logp, sampler_logp).clamp(max=cap).detach()  # (B, T)


def aggregate(
    per_token: Tensor, mask: Tensor, mode: str, *, batch_tokens: int, batch_seqs: int, max_len: int
) -> Tensor:
    """Reduce a (b, T) per-token loss of a micro-batch to its share of the whole (mini-)batch's loss.

    The normalisers come from the whole (mini-)batch, so summing the micro-batches' results gives exactly the
    full value (gradient accumulation without bias):
      token-mean               sum_{i,t} m L / batch_tokens                     (DAPO, verl default)
      seq-mean-token-mean      sum_i (sum_t m L / |o_i|) / batch_seqs            (GRPO paper)
      seq-mean-token-sum       sum_i sum_t m L / batch_seqs
      seq-mean-token-sum-norm  sum_{i,t} m L / (batch_seqs * max_len)            (Dr.GRPO's constant, as TRL)
    """
    masked = per_token * mask  # (b, T)
    if mode == "token-mean":
        return masked.sum() / max(batch_tokens, 1)
    if mode == "seq-mean-token-mean":
        lengths = mask.sum(-1).clamp(min=1)  # (b,)
        return (masked.sum(-1) / lengths).sum() / max(batch_seqs, 1)
    if mode == "seq-mean-token-sum":
        return masked.sum() / max(batch_seqs, 1)
    if mode == "seq-mean-token-sum-norm":
        return masked.sum() / max(batch_seqs * max_len, 1)
    raise ValueError(
        f"unknown loss aggregation {mode!r}; use token-mean, seq-mean-token-mean, "
        "seq-mean-token-sum or seq-mean-token-sum-norm"
    )
