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
from reasonrl.parallel import DataParallel
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
    model: nn.Module,
    batch: Batch,
    size: int,
    temperature: float,
    max_tokens: int | None = None,
    dp: DataParallel | None = None,
) -> Tensor:
    """(B, T) log-probs of the whole batch without gradients, computed micro-batch by micro-batch (with dp,
    each rank its own micro-batches, then summed over the ranks: the rows are disjoint)."""
    out = torch.zeros_like(batch.sampler_logp)  # (B, T)
    for i, rows in enumerate(row_slices(batch, size, max_tokens)):
        if dp is not None and not dp.mine(i):
            continue
        mb = batch.rows(rows).to(model_device(model))
        out[rows, : mb.mask.shape[1]] = policy_logprobs(model, mb.tokens, mb.mask, mb.groups, temperature).to(
            out.device
        )
    return out if dp is None else dp.sum_(out)


def needs_old_logp(cfg: RunConfig, kl: KLController) -> bool:
    """Old log-probs are computed when the policy moves within the batch, for the KL in the reward, or when the
    batch was sampled by an older policy (algo.max_staleness): then they are the current policy's."""
    return cfg.algo.epochs * cfg.algo.mini_batches > 1 or kl.in_reward() or cfg.algo.max_staleness > 0


def tis_cap(cfg: RunConfig) -> float | None:
    """algo.tis_cap, or 2.0 when it is null but batches may be off-policy (algo.max_staleness > 0)."""
    return cfg.algo.tis_cap if cfg.algo.tis_cap is not None or not cfg.algo.max_staleness else 2.0


def prepare(
    policy: nn.Module, critic: Any, batch: Batch, cfg: RunConfig, kl: KLController, dp: DataParallel | None = None
) -> dict[str, float]:
    """Fill batch.ref_logp / old_logp / values and fold the KL into the rewards, before the advantages."""
    size, temperature = cfg.optim.micro_batch_size, cfg.sampling.temperature
    budget = cfg.optim.micro_batch_tokens
    metrics: dict[str, float] = {}
    if kl.active:
        with reference(policy):
            batch.ref_logp = batch_logprobs(policy, batch, size, temperature, budget, dp)
    if needs_old_logp(cfg, kl):
        batch.old_logp = batch_logprobs(policy, batch, size, temperature, budget, dp)
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
    if (cap := tis_cap(cfg)) is not None:
        weights = tis_weights(old_logp, mb.sampler_logp, cap)  # (b, T)
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
    dp: DataParallel | None = None,
) -> dict[str, float]:
    """Run algo.epochs x algo.mini_batches optimizer steps on the batch; return loss/* and optim/* metrics.
    An optimizer step whose gradient norm is not finite (a NaN/inf loss) is skipped and counted in
    optim/skipped (of optim/steps); the Learner stops the run after optim.max_nonfinite_steps such batches.
    dp: this rank runs its own micro-batches and the gradients are summed over the ranks before clipping."""
    algo, size = cfg.algo, cfg.optim.micro_batch_size
    kl = kl or KLController(0.0)
    params = trainable_parameters(policy)
    steps = [rows for _ in range(algo.epochs) for rows in split_rows(batch.size, algo.mini_batches)]
    totals: dict[str, float] = {}
    parts: dict[str, float] = {}  # the micro-batches' metrics (with dp: this rank's share)
    for rows in steps:
        mini = batch.rows(rows) if len(steps) > 1 else batch
        tokens = int(mini.mask.sum())
        divisor = tokens
        if algo.token_normalizer == "batch_average" and len(steps) > 1:
            divisor = max(1, round(int(batch.mask.sum()) / algo.mini_batches))
        norms = dict(batch_tokens=divisor, batch_seqs=mini.size, max_len=cfg.sampling.max_new_tokens)
        for i, mb in enumerate(micro_batches(mini, size, model_device(policy), cfg.optim.micro_batch_tokens)):
            if dp is not None and not dp.mine(i):
                continue
            loss, metrics = micro_batch_loss(policy, mb, loss_fn, cfg, kl, norms)
            loss.backward()
            fault_point("update")
            add_weighted(parts, {"loss/pg": metrics.pop("pg")}, 1.0 / len(steps))  # already this share
            share = mb.mask.sum().item() / max(tokens, 1)  # token-weighted means
            add_weighted(parts, {f"loss/{k}": v for k, v in metrics.items()}, share / len(steps))
        if dp is not None:
            dp.sum_grads(params)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        if torch.isfinite(grad_norm):
            optimizer.step()
        else:  # a NaN/inf loss or gradient: skipped, so it never reaches the weights or Adam's moments
            totals["optim/skipped"] = totals.get("optim/skipped", 0.0) + 1
        optimizer.zero_grad(set_to_none=True)
        add_weighted(totals, {"optim/grad_norm": float(grad_norm)}, 1.0 / len(steps))
    totals |= parts if dp is None else dp.sum_metrics(parts)
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
