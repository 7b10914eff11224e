"""The policy update for one rollout batch: reference/old log-probs, micro-batched loss, gradient accumulation,
clipping and one optimizer step per epoch.

loss = aggregate( policy_loss(logp, old_logp, adv) + kl.coef * KL(logp, ref_logp) )
With algo.epochs = 1 the update is on-policy: old_logp = logp.detach() (ratio 1), so no extra forward pass.
With kl.coef = 0 the reference is never run.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from reasonrl.algos import aggregate, kl_estimate
from reasonrl.config import RunConfig
from reasonrl.model import policy_logprobs, reference, trainable_parameters
from reasonrl.types import Batch


def micro_batches(batch: Batch, size: int) -> list[Batch]:
    return [batch.rows(slice(start, start + size)) for start in range(0, batch.size, size)]


@torch.no_grad()
def batch_logprobs(model: nn.Module, batch: Batch, size: int, temperature: float) -> Tensor:
    """(B, T) log-probs of the whole batch without gradients, computed micro-batch by micro-batch."""
    out = torch.zeros_like(batch.sampler_logp)                                   # (B, T)
    for start, mb in zip(range(0, batch.size, size), micro_batches(batch, size)):
        out[start:start + mb.size, : mb.mask.shape[1]] = policy_logprobs(model, mb.tokens, mb.mask, mb.groups,
                                                                         temperature)
    return out


def update(policy: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, loss_fn: Callable[..., Any],
           cfg: RunConfig) -> dict[str, float]:
    """Run cfg.algo.epochs optimizer steps on the batch; return loss/* and grad metrics."""
    algo, size, temperature = cfg.algo, cfg.optim.micro_batch_size, cfg.sampling.temperature
    if algo.kl.coef > 0:
        with reference(policy):
            batch.ref_logp = batch_logprobs(policy, batch, size, temperature)
    if algo.epochs > 1:
        batch.old_logp = batch_logprobs(policy, batch, size, temperature)
    norms = dict(batch_tokens=int(batch.mask.sum()), batch_seqs=batch.size, max_len=cfg.sampling.max_new_tokens)
    params = trainable_parameters(policy)
    totals: dict[str, float] = {}
    for _ in range(algo.epochs):
        for mb in micro_batches(batch, size):
            share = mb.mask.sum().item() / max(norms["batch_tokens"], 1)
            logp = policy_logprobs(policy, mb.tokens, mb.mask, mb.groups, temperature)  # (b, T)
            old_logp = mb.old_logp if mb.old_logp is not None else logp.detach()
            per_token, metrics = loss_fn(logp, old_logp, mb.adv, mb.mask, algo.loss)
            pg_loss = aggregate(per_token, mb.mask, algo.aggregation, **norms)
            loss = pg_loss
            if algo.kl.coef > 0:
                kl = kl_estimate(logp, mb.ref_logp, algo.kl.estimator)           # (b, T)
                loss = loss + algo.kl.coef * aggregate(kl, mb.mask, algo.aggregation, **norms)
                metrics["kl"] = float((kl * mb.mask).sum() / mb.mask.sum().clamp(min=1))
            loss.backward()
            diff = ((logp.detach() - mb.sampler_logp).abs() * mb.mask).sum() / mb.mask.sum().clamp(min=1)
            metrics |= {"pg": pg_loss.item() / algo.epochs, "sampler_logp_diff": float(diff)}
            for key, value in metrics.items():  # token-weighted means over the batch
                weight = 1.0 if key == "pg" else share / algo.epochs
                totals[f"loss/{key}"] = totals.get(f"loss/{key}", 0.0) + value * weight
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        totals["optim/grad_norm"] = float(grad_norm)
    return totals


def make_optimizer(policy: nn.Module, cfg: RunConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW on the trainable parameters with linear warmup then a constant, cosine or linear schedule."""
    import math

    opt = cfg.optim
    optimizer = torch.optim.AdamW(trainable_parameters(policy), lr=opt.lr, betas=opt.betas,
                                  weight_decay=opt.weight_decay)

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
