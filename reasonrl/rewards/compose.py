"""Weighted sum of reward components, each call run in a worker process with a timeout.

    total = sum_k weight_k * part_k      over the components k whose part is not None (None = not applicable)

    composer = RewardComposer(RewardConfig(components={"correct": 1.0, "format": 0.1}))
    scored = composer.score(completions, examples)     # one Scored per completion
    scored[0].total, scored[0].parts                   # 1.1, {"correct": 1.0, "format": 1.0}

Components are registry names (reasonrl.rewards.REWARDS), 'package.module:function' or
'path/file.py:function'; all are checked when the composer is built. A reward that raises, times out or
crashes its worker follows cfg.on_error: "zero" (the part scores 0), "drop_group" (total None: the caller
drops the sample's group) or "raise" (RewardError).
"""
from __future__ import annotations

import difflib
import inspect
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reasonrl.config import RewardConfig
from reasonrl.rewards import REWARDS
from reasonrl.rewards.isolation import Call, Outcome, WorkerPool, function_ref, normalize_ref, resolve_function

if TYPE_CHECKING:
    from reasonrl.types import Example

logger = logging.getLogger(__name__)

_LOG_CHARS = 200
"""Characters of a failing completion shown in the log and in RewardError."""


@dataclass
class Scored:
    """The reward of one completion."""

    total: float | None
    """Weighted sum of the parts; None means "drop this sample's group" (only with on_error=drop_group)."""
    parts: dict[str, float | None]
    """Unweighted value of each component, None where it does not apply (or failed, with drop_group)."""
    errors: list[str] = field(default_factory=list)
    """'component: message' for each component that failed on this completion."""


class RewardError(RuntimeError):
    """A reward failed and rewards.on_error is "raise"."""

    def __init__(self, component: str, error: str, completion: str, example_id: str) -> None:
        self.component, self.error, self.completion, self.example_id = component, error, completion, example_id
        super().__init__(f"reward {component!r} failed on example {example_id!r}: {error}\n"
                         f"completion: {_truncate(completion)!r}\n"
                         "(set rewards.on_error=zero or drop_group to keep training through reward failures)")


def _truncate(text: str, limit: int = _LOG_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more chars]"


def resolve_component(name: str) -> str:
    """Component name -> the function ref a worker resolves. Raises ValueError naming a bad name.

    A registry name becomes its function's 'module:function', so rewards registered by a plugin module in
    this process are found by workers too (importing the module registers them there).
    """
    if ":" in name:
        ref = normalize_ref(name)
        resolve_function(ref)  # imports it here, so a broken module fails now and not at step 1
        return ref
    if name not in REWARDS:
        close = difflib.get_close_matches(name, REWARDS.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown reward {name!r} in rewards.components{hint}; known: "
                         f"{', '.join(REWARDS.names())}; or give 'package.module:function' / "
                         "'path/file.py:function'")
    try:
        return function_ref(REWARDS.get(name))
    except ValueError as e:
        raise ValueError(f"reward {name!r}: {e}") from e


def check_signature(name: str, ref: str, options: dict[str, Any]) -> None:
    """The reward must accept (completion=, example=, **options). Raises ValueError naming what is wrong."""
    fn = resolve_function(ref)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C function: nothing to check
    try:
        signature.bind(completion="", example=None, **options)
    except TypeError as e:
        accepted = [p for p in signature.parameters if p not in ("completion", "example")]
        raise ValueError(f"reward {name!r} cannot be called as fn(completion, example, **rewards.options."
                         f"{name}={sorted(options)}): {e}. Its options are: {', '.join(accepted) or 'none'}"
                         ) from e


def validate_reward_config(cfg: RewardConfig) -> dict[str, str]:
    """Check components, weights and options; return component name -> function ref."""
    refs = {name: resolve_component(name) for name in cfg.components}
    for name, weight in cfg.components.items():
        if not math.isfinite(weight):
            raise ValueError(f"rewards.components.{name} has weight {weight}; use a finite number")
    for name in cfg.options:
        if name not in cfg.components:
            raise ValueError(f"rewards.options has an entry for {name!r}, which is not in rewards.components "
                             f"({', '.join(cfg.components)}); add it there or remove its options")
    for name, ref in refs.items():
        check_signature(name, ref, cfg.options.get(name, {}))
    return refs


class RewardComposer:
    """Scores completions with the configured components in a worker pool. Call close() when done."""

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        self.refs = validate_reward_config(cfg)
        self._pool = WorkerPool(cfg.workers, cfg.timeout_s, preload=list(self.refs.values()))

    def score(self, completions: list[str], examples: list[Example]) -> list[Scored]:
        """One Scored per completion; completions[i] answers examples[i]."""
        if len(completions) != len(examples):
            raise ValueError(f"score() got {len(completions)} completions but {len(examples)} examples; "
                             "pass one example per completion (repeat it for each sample of a group)")
        names = list(self.cfg.components)
        calls = [Call(self.refs[name], {"completion": completion, "example": example,
                                        **self.cfg.options.get(name, {})})
                 for completion, example in zip(completions, examples) for name in names]
        outcomes = self._pool.run(calls)  # (B * K,), sample-major
        k = len(names)
        return [self._combine(completions[i], examples[i], names, outcomes[i * k:(i + 1) * k])
                for i in range(len(completions))]

    def _combine(self, completion: str, example: Example, names: list[str], outcomes: list[Outcome]) -> Scored:
        parts: dict[str, float | None] = {}
        errors: list[str] = []
        for name, outcome in zip(names, outcomes):
            if outcome.error is None:
                parts[name] = outcome.value
                continue
            logger.warning("reward %r failed on example %r: %s; completion: %r", name, example.id,
                           outcome.error, _truncate(completion))
            if self.cfg.on_error == "raise":
                raise RewardError(name, outcome.error, completion, example.id)
            errors.append(f"{name}: {outcome.error}")
            parts[name] = 0.0 if self.cfg.on_error == "zero" else None
        if errors and self.cfg.on_error == "drop_group":
            return Scored(total=None, parts=parts, errors=errors)
        total = sum(self.cfg.components[name] * value for name, value in parts.items() if value is not None)
        return Scored(total=float(total), parts=parts, errors=errors)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> RewardComposer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
