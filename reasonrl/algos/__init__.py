"""Algorithms as registries of pure functions: advantage estimators, policy losses, KL estimators, aggregation,
and DAPO's reward shaping and dynamic sampling."""

from reasonrl.algos.advantages import ADVANTAGES
from reasonrl.algos.kl import KL_ESTIMATORS, kl_estimate
from reasonrl.algos.losses import POLICY_LOSSES, aggregate

__all__ = ["ADVANTAGES", "POLICY_LOSSES", "KL_ESTIMATORS", "aggregate", "kl_estimate"]
