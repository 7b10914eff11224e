"""KL estimators (Schulman, http://joschu.net/blog/kl-approx.html) on tokens sampled from the policy.

With d = ref_logp - logp:  k1 = -d,  k2 = d^2 / 2,  k3 = exp(d) - 1 - d  (>= 0, DeepSeekMath's choice).
As loss terms their gradients differ (ALGORITHMS.md section 0): E[grad k1] = 0 on-policy, grad k2 gives
grad KL(pi||ref), and grad k3 gives grad KL(ref||pi) although its value estimates KL(pi||ref).
"""
from __future__ import annotations

import torch
from torch import Tensor

from reasonrl.registry import Registry

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
