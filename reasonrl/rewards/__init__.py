"""Reward functions, registered by name in REWARDS. Every entry has one signature:

    fn(completion: str, example: Example, **options) -> float | None     # None = "does not apply here"

Built-ins (rewards/builtin.py): correct, format, numeric. RewardComposer (rewards/compose.py) weights and sums
them, running each call in a worker process (rewards/isolation.py) so a hung or crashing reward cannot stop
training. This package must stay free of torch imports: the worker processes import it.
"""
from __future__ import annotations

from typing import Callable

from reasonrl.registry import Registry

RewardFn = Callable[..., "float | None"]
"""fn(completion: str, example: Example, **options) -> float | None"""

REWARDS: Registry[RewardFn] = Registry("reward")

from reasonrl.rewards import builtin, code  # noqa: E402,F401  (registers the built-in rewards)
