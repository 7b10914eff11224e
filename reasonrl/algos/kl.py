"""KL to the reference: estimators, folding into the reward, and the adaptive coefficient.

With d = ref_logp - logp (tokens sampled from the policy):  k1 = -d,  k2 = d^2 / 2,  k3 = exp(d) - 1 - d
(>= 0, DeepSeekMath's choice); Schulman, http://joschu.net/blog/kl-approx.html. As loss terms their gradients
differ (ALGORITHMS.md section 0): E[grad k1] = 0 on-policy, grad k2 gives grad KL(pi||ref), and grad k3 gives
grad KL(ref||pi) although its value estimates KL(pi||ref). k1 belongs in the reward:
    in the reward (InstructGPT, arXiv:2203.02155):  r_t = score * [t = last] - beta * k(old_logp_t, ref_logp_t)
    adaptive beta (Ziegler et al., arXiv:1909.08593): beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reasonrl.registry import Registry
from reasonrl.types import Batch

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp                                                       # (B, T)


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (ref_logp - logp).pow(2)                                        # (B, T)


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    d = (ref_logp - logp).clamp(-20.0, 20.0)                                     # (B, T)
    return (torch.exp(d) - 1.0 - d).clamp(max=10.0)                              # (B, T), as verl clamps


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token KL(pi || ref) estimate (B, T) with the named estimator."""
    return KL_ESTIMATORS.get(estimator)(logp, ref_logp)


def fold_kl_into_rewards(batch: Batch, coef: float, estimator: str) -> float:
    """KL in the reward: token_rewards -= coef * KL_t and rewards -= coef * sum_t KL_t (the sequence form, RLOO),
    with KL_t = k(old_logp, ref_logp) on the rollout policy's log-probs. Returns the token-mean KL."""
    assert batch.old_logp is not None and batch.ref_logp is not None and batch.token_rewards is not None
    kl = kl_estimate(batch.old_logp, batch.ref_logp, estimator) * batch.mask    # (B, T)
    batch.token_rewards = batch.token_rewards - coef * kl                        # (B, T)
    batch.rewards = batch.rewards - coef * kl.sum(-1)                            # (B,)
    return float(kl.sum() / batch.mask.sum().clamp(min=1))


@dataclass
class KLController:
    """The KL coefficient beta: fixed (target None) or Ziegler's adaptive controller. It is state, saved with
    every checkpoint (trainer_state.json: kl_coef), so a resumed run continues with the same beta."""

    coef: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float | None, samples: int) -> None:
        """Move beta after a step whose token-mean KL was kl, over `samples` rollouts (no-op when fixed)."""
        if self.target is None or kl is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.coef *= 1.0 + error * samples / self.horizon
