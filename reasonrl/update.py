"""The policy update for one rollout batch, in two parts:

prepare (no gradients, before the advantages): reference log-probs (kl.coef > 0), old log-probs (several
    optimizer steps per batch, or the KL in the reward), critic values (gae), and the KL folded into the rewards.
update: algo.epochs passes, each split into algo.mini_batches optimizer steps; each mini-batch is
    micro-batched with gradient accumulation, then the gradient is clipped and AdamW steps.

    loss = aggregate(w_tis * policy_loss(logp, old_logp, adv)) + beta * aggregate(KL(logp, ref))   [placement=loss]
           - entropy_coef * aggregate(entropy)
With epochs = mini_batches = 1 the update is on-policy: old_logp = logp.detach() (ratio 1), no extra forward
pass. With kl.coef = 0 the reference is never run. Normalisers of the aggregation are those of the mini-batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from reasonrl.algos import aggregate, kl_estimate
from reasonrl.algos.kl import KLController, fold_kl_into_rewards
from reasonrl.algos.losses import masked_mean, tis_weights
from reasonrl.config import RunConfig
from reasonrl.errors import RunFailure
from reasonrl.model import policy_logprobs, policy_logprobs_entropy, reference, trainable_parameters
from reasonrl.types import Batch
from reasonrl.utils.faults import fault_point


def row_slices(batch: Batch, size: int, max_tokens: int | None = None) -> list[slice]:
    """Consecutive row ranges of at most `size` rows and, with max_tokens, at most max_tokens rows x padded
    length (each micro-batch is trimmed to its longest row), so long multi-turn rows go fewer at a time."""
    if max_tokens is None:
        return [slice(start, min(start + size, batch.size)) for start in range(0, batch.size, size)]
    used = batch.mask.flip(1).int().argmax(1)  # (B,) untrained tail length
    lengths = (batch.mask.shape[1] - used).where(batch.mask.any(1), 1).tolist()  # (B,) trimmed length per row
    out, start = [], 0
    while start < batch.size:
        end, longest = start + 1, lengths[start]
        while end < batch.size and end - start < size and (end - start + 1) * max(longest, lengths[end]) <= max_tokens:
            longest = max(longest, lengths[end])
            end += 1
        out.append(slice(start, end))
        start = end
    return out


def micro_batches(batch: Batch, size: int, device: Any = None, max_tokens: int | None = None) -> list[Batch]:
    """The row_slices of the batch as Batches, moved to `device` (the model's) when given."""
    out = [batch.rows(rows) for rows in row_slices(batch, size, max_tokens)]
    return out if device is None else [mb.to(device) for mb in out]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def split_rows(size: int, parts: int) -> list[slice]:
    """`parts` contiguous row ranges of near-equal size covering range(size) (empty ones left out)."""
    bounds = [round(i * size / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def add_weighted(totals: dict[str, float], metrics: dict[str, float], weight: float) -> None:
    """totals[k] += metrics[k] * weight: weighted means accumulated over micro-batches and optimizer steps."""
    for key, value in metrics.items():
        totals[key] = totals.get(key, 0.0) + value * weight


@torch.no_grad()
def batch_logprobs(
    model: nn.Module, batch: Batch, size: int, temperature: float, max_tokens: int | None = None
) -> Tensor:
    """(B, T) log-probs of the whole batch without gradients, computed micro-batch by micro-batch."""
    out = torch.zeros_like(batch.sampler_logp)  # (B, T)
    for rows in row_slices(batch, size, max_tokens):
        mb = batch.rows(rows).to(model_device(model))
        out[rows, : mb.mask.shape[1]] = policy_logprobs(model, mb.tokens, mb.mask, mb.groups, temperature).to(
            out.device
        )
    return out


def needs_old_logp(cfg: RunConfig, kl: KLController) -> bool:
    """Old log-probs are computed when the policy moves within the batch, or for the KL in the reward."""
    return cfg.algo.epochs * cfg.algo.mini_batches > 1 or kl.in_reward()


def prepare(policy: nn.Module, critic: Any, batch: Batch, cfg: RunConfig, kl: KLController) -> dict[str, float]:
    """Fill batch.ref_logp / old_logp / values and fold the KL into the rewards, before the advantages."""
    size, temperature = cfg.optim.micro_batch_size, cfg.sampling.temperature
    budget = cfg.optim.micro_batch_tokens
    metrics: dict[str, float] = {}
    if kl.active:
        with reference(policy):
            batch.ref_logp = batch_logprobs(policy, batch, size, temperature, budget)
    if needs_old_logp(cfg, kl):
        batch.old_logp = batch_logprobs(policy, batch, size, temperature, budget)
    if critic is not None:
        batch.values = critic.values(batch)
    if kl.in_reward():
        metrics["loss/kl"] = fold_kl_into_rewards(batch, kl.coef, kl.estimator)
    return metrics


def drop_truncated(batch: Batch) -> Batch:
    """DAPO overlong filtering: the rows that hit the token limit leave the batch after their group's advantages
    were computed, so they count in the baselines but not in the loss or its normaliser."""
    assert batch.truncated is not None, "collate builds truncated"
    return batch.rows(~batch.truncated)


def micro_batch_loss(
    policy: nn.Module, mb: Batch, loss_fn: Callable[..., Any], cfg: RunConfig, kl: KLController, norms: dict[str, int]
) -> tuple[Tensor, dict[str, float]]:
    """This micro-batch's share of the mini-batch loss, and its per-token metrics."""
    algo = cfg.algo
    logp, entropy = policy_logprobs_entropy(
        policy, mb.tokens, mb.mask, mb.groups, cfg.sampling.temperature, with_entropy=algo.entropy_coef > 0
    )  # (b, T), (b, T) | None
    old_logp = mb.old_logp if mb.old_logp is not None else logp.detach()  # (b, T)
    per_token, metrics = loss_fn(logp, old_logp, mb.adv, mb.mask, algo.loss)  # (b, T)
    if algo.tis_cap is not None:
        weights = tis_weights(old_logp, mb.sampler_logp, algo.tis_cap)  # (b, T)
        per_token = per_token * weights
        metrics["tis_weight"] = masked_mean(weights, mb.mask)
    pg_loss = aggregate(per_token, mb.mask, algo.aggregation, **norms)
    loss = pg_loss
    if kl.in_loss():
        assert mb.ref_logp is not None, "prepare() computes ref_logp when the KL is active"
        kl_t = kl_estimate(logp, mb.ref_logp, kl.estimator)  # (b, T)
        loss = loss + kl.coef * aggregate(kl_t, mb.mask, algo.aggregation, **norms)
        metrics["kl"] = masked_mean(kl_t.detach(), mb.mask)
    if entropy is not None:
        loss = loss - algo.entropy_coef * aggregate(entropy, mb.mask, algo.aggregation, **norms)
        metrics["entropy"] = masked_mean(entropy.detach(), mb.mask)
    metrics["sampler_logp_diff"] = masked_mean((logp.detach() - mb.sampler_logp).abs(), mb.mask)
    return loss, metrics | {"pg": pg_loss.item()}


def update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    loss_fn: Callable[..., Any],
    cfg: RunConfig,
    kl: KLController | None = None,
) -> dict[str, float]:
    """Run algo.epochs x algo.mini_batches optimizer steps on the batch; return loss/* and optim/* metrics.
    An optimizer step whose gradient norm is not finite (a NaN/inf loss) is skipped and counted in
    optim/skipped (of optim/steps); the Learner stops the run after optim.max_nonfinite_steps such batches."""
    algo, size = cfg.algo, cfg.optim.micro_batch_size
    kl = kl or KLController(0.0)
    params = trainable_parameters(policy)
    steps = [rows for _ in range(algo.epochs) for rows in split_rows(batch.size, algo.mini_batches)]
    totals: dict[str, float] = {}
    for rows in steps:
        mini = batch.rows(rows) if len(steps) > 1 else batch
        tokens = int(mini.mask.sum())
        divisor = tokens
        if algo.token_normalizer == "batch_average" and len(steps) > 1:
            divisor = max(1, round(int(batch.mask.sum()) / algo.mini_batches))
        norms = dict(batch_tokens=divisor, batch_seqs=mini.size, max_len=cfg.sampling.max_new_tokens)
        for mb in micro_batches(mini, size, model_device(policy), cfg.optim.micro_batch_tokens):
            loss, metrics = micro_batch_loss(policy, mb, loss_fn, cfg, kl, norms)
            loss.backward()
            fault_point("update")
            add_weighted(totals, {"loss/pg": metrics.pop("pg")}, 1.0 / len(steps))  # already this share
            share = mb.mask.sum().item() / max(tokens, 1)  # token-weighted means
            add_weighted(totals, {f"loss/{k}": v for k, v in metrics.items()}, share / len(steps))
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        if torch.isfinite(grad_norm):
            optimizer.step()
        else:  # a NaN/inf loss or gradient: skipped, so it never reaches the weights or Adam's moments
            totals["optim/skipped"] = totals.get("optim/skipped", 0.0) + 1
        optimizer.zero_grad(set_to_none=True)
        add_weighted(totals, {"optim/grad_norm": float(grad_norm)}, 1.0 / len(steps))
    if steps:
        totals.setdefault("optim/skipped", 0.0)
    totals["optim/steps"] = float(len(steps))  # for the Learner's count; not logged
    if kl.active:
        totals["loss/kl_coef"] = kl.coef
    return totals


class Diverged(RunFailure):
    """The loss or its gradient was not finite on optim.max_nonfinite_steps batches in a row."""


def make_optimizer(policy: nn.Module, cfg: RunConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW on the trainable parameters with linear warmup then a constant, cosine or linear schedule."""
    opt = cfg.optim
    optimizer = torch.optim.AdamW(
        trainable_parameters(policy), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay
    )

    def factor(step: int) -> float:
        if step < opt.warmup_steps:
            return (step + 1) / (opt.warmup_steps + 1)
        progress = (step - opt.warmup_steps) / max(1, cfg.steps - opt.warmup_steps)
        if opt.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if opt.schedule == "linear":
            return max(0.0, 1 - progress)
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
