"""Reward functions, registered by name in REWARDS. Every entry has one signature:

    fn(completion: str, example: Example, **options) -> float | None     # None = "does not apply here"

A reward may instead return StepScores(total, steps=((char_end, value), ...)): the same total plus where in
the completion each part of it was earned (the `steps` reward does); rollout turns this into per-step
rewards for process supervision. A reward may carry `fn.check_options(**options)`, called when the composer
is built so bad option values fail before training. A reward marked with @batched instead takes lists,
`fn(completions, examples, **options) -> list[float | None]`, and runs in the trainer process (reward_model).

Built-ins: correct, format, numeric (builtin.py), steps (steps.py), length (shaping.py), code_tests (code.py),
reward_model (reward_model.py). RewardComposer (compose.py) weights, gates and sums them, running each
per-sample call in a worker process (isolation.py) so a hung or crashing reward cannot stop training. This
package must stay free of top-level torch imports: the worker processes import it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from reasonrl.registry import Registry

RewardFn = Callable[..., "float | StepScores | Sequence[float | None] | None"]
"""fn(completion: str, example: Example, **options) -> float | StepScores | None; a @batched one returns a list."""

REWARDS: Registry[RewardFn] = Registry("reward")
F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class StepScores:
    """A reward value with per-step detail: `steps` are (end offset in the completion, value) pairs.

    The composer places each step's value at the token where its text ends and whatever of `total` the steps
    do not account for at the completion's last token, so the per-step rewards always sum to the total."""

    total: float
    steps: tuple[tuple[int, float], ...] = ()


def batched(fn: F) -> F:
    """Mark fn as a batched reward: fn(completions, examples, **options) -> list[float | None], run in the
    trainer process (for models that want the accelerator and batching, not a per-call worker)."""
    fn.batched = True  # type: ignore[attr-defined]
    return fn


from reasonrl.rewards import builtin, code, steps, shaping, reward_model  # noqa: E402,F401  (registers built-ins)
