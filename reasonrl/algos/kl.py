"""KL to the reference: estimators, folding into the reward, and the adaptive coefficient.

With d = ref_logp - logp (tokens sampled from the policy):  k1 = -d,  k2 = d^2 / 2,  k3 = exp(d) - 1 - d
(>= 0, DeepSeekMath's choice); Schulman, http://joschu.net/blog/kl-approx.html. As loss terms their gradients
differ (docs/algorithms.md, KL estimators): E[grad k1] = 0 on-policy, grad k2 gives grad KL(pi||ref), and grad k3 gives
grad KL(ref||pi) although its value estimates KL(pi||ref). k1 belongs in the reward:
    in the reward (InstructGPT, arXiv:2203.02155):  r_t = score * [t = last] - beta * k(old_logp_t, ref_logp_t)
    adaptive beta (Ziegler et al., arXiv:1909.08593): beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon
Sequence KL between two models on fixed samples y ~ p (the forgetting monitor, reasonrl/forgetting.py):
    KL(p || q) = E_y sum_t log p(y_t|y<t) - log q(y_t|y<t)   (k1, summed)   = E_y sum_t KL(p(.|y<t) || q(.|y<t))
the second form (chain rule) uses the exact next-token KLs: never negative, lower variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from reasonrl.config.algo import KLConfig
from reasonrl.registry import Registry
from reasonrl.types import Batch

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """log(pi/ref): unbiased, can be negative per token."""
    return logp - ref_logp  # (B, T)


@KL_ESTIMATORS.register("k2")
def k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """0.5 log(ref/pi)^2: biased, non-negative; its gradient is the true KL gradient's on-policy."""
    return 0.5 * (ref_logp - logp).pow(2)  # (B, T)


@KL_ESTIMATORS.register("k3")
def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """ref/pi - 1 - log(ref/pi): unbiased and non-negative (Schulman); clamped at 10 as verl does."""
    d = (ref_logp - logp).clamp(-20.0, 20.0)  # (B, T)
    return (torch.exp(d) - 1.0 - d).clamp(max=10.0)  # (B, T), as verl clamps


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token KL(pi || ref) estimate (B, T) with the named estimator."""
    return KL_ESTIMATORS.get(estimator)(logp, ref_logp)


def fold_kl_into_rewards(batch: Batch, coef: float, estimator: str) -> float:
    """KL in the reward: token_rewards -= coef * KL_t and rewards -= coef * sum_t KL_t (the sequence form, RLOO),
    with KL_t = k(old_logp, ref_logp) on the rollout policy's log-probs. Returns the token-mean KL."""
    assert batch.old_logp is not None and batch.ref_logp is not None and batch.token_rewards is not None
    kl = kl_estimate(batch.old_logp, batch.ref_logp, estimator) * batch.mask  # (B, T)
    batch.token_rewards = batch.token_rewards - coef * kl  # (B, T)
    batch.rewards = batch.rewards - coef * kl.sum(-1)  # (B,)
    return float(kl.sum() / batch.mask.sum().clamp(min=1))


def kl_terms(logits_p: Tensor, logits_q: Tensor, targets: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """(B, T, V) logits of p and of q at the same positions, (B, T) next tokens -> (B, T) exact
    KL(p_t || q_t) of the tempered next-token distributions and (B, T) log p(target) - log q(target).
    Works 64 positions at a time; logits must be finite."""
    kls, ratios = [], []
    for start in range(0, targets.shape[1], 64):
        logp = (logits_p[:, start : start + 64].float() / temperature).log_softmax(-1)  # (B, t, V)
        logq = (logits_q[:, start : start + 64].float() / temperature).log_softmax(-1)  # (B, t, V)
        kls.append((logp.exp() * (logp - logq)).sum(-1).clamp(min=0.0))  # (B, t) rounding can dip < 0
        picked = targets[:, start : start + 64, None]  # (B, t, 1)
        ratios.append((logp.gather(-1, picked) - logq.gather(-1, picked)).squeeze(-1))  # (B, t)
    return torch.cat(kls, dim=1), torch.cat(ratios, dim=1)  # (B, T), (B, T)


def sequence_sum(values: Tensor, mask: Tensor) -> Tensor:
    """(B, T) per-token values, (B, T) bool mask -> (B,) sum over each completion's tokens."""
    return (values * mask).sum(-1)  # (B,)


@dataclass
class KLController:
    """The one owner of the KL penalty: its coefficient beta (fixed, or Ziegler's adaptive controller when
    target is set), estimator and placement. Built from algo.kl; beta is state (state_dict, saved with every
    checkpoint), so a resumed run continues with the same beta."""

    coef: float
    target: float | None = None
    horizon: int = 10000
    estimator: str = "k3"
    placement: str = "loss"

    @classmethod
    def from_config(cls, kl: KLConfig) -> KLController:
        return cls(kl.coef, kl.target, kl.horizon, kl.estimator, kl.placement)

    @property
    def active(self) -> bool:
        """Whether the reference is run at all (beta > 0)."""
        return self.coef > 0

    def in_loss(self) -> bool:
        return self.coef > 0 and self.placement == "loss"

    def in_reward(self) -> bool:
        return self.coef > 0 and self.placement == "reward"

    def update(self, kl: float | None, samples: int) -> None:
        """Move beta after a step whose token-mean KL was kl, over `samples` rollouts (no-op when fixed)."""
        if self.target is None or kl is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.coef *= 1.0 + error * samples / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"coef": self.coef}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.coef = state["coef"]
