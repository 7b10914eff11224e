"""Weighted, gated sum of reward components; per-sample calls run in worker processes with a timeout.

    total = sum_k weight_k * part_k * open_k    over components k whose part is not None (None = not applicable)
    open_k = 0 when k is gated (rewards.gates: {format: correct}) and its gate component scored below the
             threshold (default 1.0; "correct>=0.5" sets one), else 1

    composer = RewardComposer(RewardConfig(components={"correct": 1.0, "format": 0.1}))
    scored = composer.score(completions, examples)     # one Scored per completion
    scored[0].total, scored[0].parts                   # 1.1, {"correct": 1.0, "format": 1.0}

Components are registry names (reasonrl.rewards.REWARDS), 'package.module:function' or
'path/file.py:function'; all are checked when the composer is built (and their options, through a reward's
check_options). @batched rewards (reward_model) run here, in the trainer process, on the whole batch. Parts
are logged unweighted and ungated. A reward that returns StepScores also gives Scored.steps: (character
offset, weighted value) pairs that rollout places on tokens. A reward that raises, times out or crashes its
worker, or returns NaN, inf or a non-number follows cfg.on_error: "zero" (the part scores 0), "skip_group" (total
None: the caller leaves the sample's group out) or "stop" (RewardError). The breaker stops the run (RewardError)
whatever on_error says when one reward fails on more than cfg.max_failure_share of a call's samples, or when
cfg.max_timeouts_in_row calls in a row time out.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from reasonrl.config import RewardConfig
from reasonrl.errors import RunFailure
from reasonrl.rewards import REWARDS
from reasonrl.rewards.isolation import (
    GAVE_UP,
    Call,
    Outcome,
    WorkerPool,
    check_result,
    function_ref,
    normalize_ref,
    resolve_function,
)

if TYPE_CHECKING:
    from reasonrl.types import Example

logger = logging.getLogger(__name__)

_LOG_CHARS = 200
"""Characters of a failing completion shown in the log and in RewardError."""
_GATE = re.compile(r"^\s*([^<>=\s]+)\s*(?:(>=|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?\s*$")


@dataclass
class Scored:
    """The reward of one completion."""

    total: float | None
    """Weighted sum of the parts; None means "leave this sample's group out" (only with on_error=skip_group)."""
    parts: dict[str, float | None]
    """Unweighted value of each component, None where it does not apply (or failed, with skip_group)."""
    errors: list[str] = field(default_factory=list)
    """'component: message' for each component that failed on this completion."""
    steps: list[tuple[int, float]] = field(default_factory=list)
    """(end offset in the completion, weighted value) of the steps that StepScores components reported."""
    gated: list[str] = field(default_factory=list)
    """Components that scored but did not count, because their gate was closed."""


@dataclass(frozen=True)
class Gate:
    on: str
    """The component whose score opens the gate."""
    threshold: float = 1.0
    strict: bool = False
    """True: the score must exceed the threshold; False: reach it."""

    def is_open(self, parts: dict[str, float | None]) -> bool:
        value = parts.get(self.on)
        return value is not None and (value > self.threshold if self.strict else value >= self.threshold)


class RewardError(RunFailure):
    """A reward failed and rewards.on_error is "stop", or the breaker tripped (`breaker` says how)."""

    def __init__(self, component: str, error: str, completion: str, example_id: str, breaker: str = "") -> None:
        self.component, self.error, self.completion, self.example_id = component, error, completion, example_id
        fix = (
            "the reward is broken or too slow: fix it, raise rewards.timeout_s, or set rewards.max_failure_share="
            "1.0 and rewards.max_timeouts_in_row=0 to go on"
            if breaker
            else "set rewards.on_error=zero or skip_group to keep training through reward failures"
        )
        super().__init__(
            f"reward {component!r} failed {breaker or 'on example ' + repr(example_id)}: {error}; "
            f"last sample: example {example_id!r}, completion {_truncate(completion, 120)!r} ({fix})"
        )


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
        raise ValueError(
            f"unknown reward {name!r} in rewards.components{hint}; known: "
            f"{', '.join(REWARDS.names())}; or give 'package.module:function' / "
            "'path/file.py:function'"
        )
    try:
        return function_ref(REWARDS.get(name))
    except ValueError as e:
        raise ValueError(f"reward {name!r}: {e}") from e


def check_signature(name: str, ref: str, options: dict[str, Any]) -> None:
    """The reward must accept (completion=, example=, **options), or (completions=, examples=, **options) when
    @batched, and pass its own check_options. Raises ValueError naming what is wrong."""
    fn = resolve_function(ref)
    inputs = ("completions", "examples") if getattr(fn, "batched", False) else ("completion", "example")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C function: nothing to check
    try:
        signature.bind(**dict.fromkeys(inputs), **options)
    except TypeError as e:
        accepted = [p for p in signature.parameters if p not in inputs]
        raise ValueError(
            f"reward {name!r} cannot be called as fn({', '.join(inputs)}, **rewards.options."
            f"{name}={sorted(options)}): {e}. Its options are: {', '.join(accepted) or 'none'}"
        ) from e
    checker = getattr(fn, "check_options", None)
    if checker is not None:
        try:
            checker(**options)
        except TypeError as e:
            raise ValueError(f"reward {name!r}: {e}") from e


def parse_gates(cfg: RewardConfig) -> dict[str, Gate]:
    """rewards.gates ({component: "other" | "other>=x" | "other>x"}) -> Gate per gated component."""
    gates = {}
    for name, text in cfg.gates.items():
        match = _GATE.match(text)
        if name not in cfg.components or match is None or match.group(1) not in cfg.components:
            raise ValueError(
                f"rewards.gates.{name}={text!r}: both the gated component and its gate must be in "
                f"rewards.components ({', '.join(cfg.components)}), written as 'other', "
                "'other>=0.5' or 'other>0'"
            )
        if match.group(1) == name:
            raise ValueError(f"rewards.gates.{name}={text!r}: a component cannot gate itself")
        threshold = float(match.group(3)) if match.group(3) else 1.0
        gates[name] = Gate(on=match.group(1), threshold=threshold, strict=match.group(2) == ">")
    return gates


def validate_reward_config(cfg: RewardConfig) -> dict[str, str]:
    """Check components, weights, options and gates; return component name -> function ref."""
    refs = {name: resolve_component(name) for name in cfg.components}
    for name, weight in cfg.components.items():
        if not math.isfinite(weight):
            raise ValueError(f"rewards.components.{name} has weight {weight}; use a finite number")
    for name in cfg.options:
        if name not in cfg.components:
            raise ValueError(
                f"rewards.options has an entry for {name!r}, which is not in rewards.components "
                f"({', '.join(cfg.components)}); add it there or remove its options"
            )
    for name, ref in refs.items():
        check_signature(name, ref, cfg.options.get(name, {}))
    parse_gates(cfg)
    return refs


class RewardComposer:
    """Scores completions with the configured components. Call close() when done (kills the workers)."""

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        self.refs = validate_reward_config(cfg)
        self.gates = parse_gates(cfg)
        self.batched: dict[str, Callable[..., Any]] = {
            name: fn for name, ref in self.refs.items() if getattr(fn := resolve_function(ref), "batched", False)
        }
        self.pooled = [name for name in cfg.components if name not in self.batched]
        self._pool: WorkerPool | None = None  # started on the first score(): environments that score
        self._starting = threading.Lock()  # themselves (sokoban, coding) never need the workers

    def score(self, completions: list[str], examples: list[Example]) -> list[Scored]:
        """One Scored per completion; completions[i] answers examples[i]."""
        if len(completions) != len(examples):
            raise ValueError(
                f"score() got {len(completions)} completions but {len(examples)} examples; "
                "pass one example per completion (repeat it for each sample of a group)"
            )
        outcomes: dict[str, list[Outcome]] = {
            name: self._run_batched(name, completions, examples) for name in self.batched
        }
        calls = [
            Call(self.refs[name], {"completion": completion, "example": example, **self.cfg.options.get(name, {})})
            for completion, example in zip(completions, examples)
            for name in self.pooled
        ]
        with self._starting:
            if self.pooled and self._pool is None:
                self._pool = WorkerPool(
                    self.cfg.workers,
                    self.cfg.timeout_s,
                    preload=[self.refs[name] for name in self.pooled],
                    max_timeouts_in_row=self.cfg.max_timeouts_in_row,
                    memory_mb=self.cfg.memory_mb,
                )
        flat = self._pool.run(calls) if self._pool is not None else []  # (B * K,), sample-major
        for j, name in enumerate(self.pooled):
            outcomes[name] = flat[j :: len(self.pooled)]
        names = list(self.cfg.components)
        self._breaker(completions, examples, outcomes)
        return [
            self._combine(completions[i], examples[i], {name: outcomes[name][i] for name in names})
            for i in range(len(completions))
        ]

    def _run_batched(self, name: str, completions: list[str], examples: list[Example]) -> list[Outcome]:
        """Call a @batched reward on the whole batch here; any failure fails every sample of the batch."""
        try:
            values = list(self.batched[name](completions, examples, **self.cfg.options.get(name, {})))
            if len(values) != len(completions):
                raise ValueError(f"returned {len(values)} values for {len(completions)} completions")
            return [
                Outcome(value, None, steps) for value, steps in (check_result(v, f"reward {name!r}") for v in values)
            ]
        except Exception as e:  # the reward's own error: handled by on_error like a worker's
            return [Outcome(None, f"{type(e).__name__}: {e}")] * len(completions)

    def _breaker(self, completions: list[str], examples: list[Example], outcomes: dict[str, list[Outcome]]) -> None:
        """Raise RewardError when the pool gave up after max_timeouts_in_row timeouts in a row, or when a reward
        failed on more than max_failure_share of the samples."""
        timeouts = [
            (i, name)
            for name, results in outcomes.items()
            for i, o in enumerate(results)
            if (o.error or "").startswith("timeout")
        ]
        if any((o.error or "").startswith(GAVE_UP) for results in outcomes.values() for o in results) and timeouts:
            i, name = max(timeouts)
            raise RewardError(
                name,
                outcomes[name][i].error or "",
                completions[i],
                examples[i].id,
                breaker=f"{self.cfg.max_timeouts_in_row} times in a row (rewards.max_timeouts_in_row)",
            )
        for name, results in outcomes.items():
            failed = [i for i, o in enumerate(results) if o.error is not None]
            if failed and len(failed) > self.cfg.max_failure_share * len(results):
                last = failed[-1]
                raise RewardError(
                    name,
                    results[last].error or "",
                    completions[last],
                    examples[last].id,
                    breaker=f"on {len(failed)} of {len(results)} samples, more than "
                    f"rewards.max_failure_share={self.cfg.max_failure_share:g}",
                )

    def _combine(self, completion: str, example: Example, outcomes: dict[str, Outcome]) -> Scored:
        parts: dict[str, float | None] = {}
        errors: list[str] = []
        for name, outcome in outcomes.items():
            if outcome.error is None:
                parts[name] = outcome.value
                continue
            logger.warning(
                "reward %r failed on example %r: %s; completion: %r",
                name,
                example.id,
                outcome.error,
                _truncate(completion),
            )
            if self.cfg.on_error == "stop":
                raise RewardError(name, outcome.error, completion, example.id)
            errors.append(f"{name}: {outcome.error}")
            parts[name] = 0.0 if self.cfg.on_error == "zero" else None
        if errors and self.cfg.on_error == "skip_group":
            return Scored(total=None, parts=parts, errors=errors)
        gated = [name for name, gate in self.gates.items() if parts.get(name) is not None and not gate.is_open(parts)]
        counted = [name for name, value in parts.items() if value is not None and name not in gated]
        total = sum(self.cfg.components[name] * cast(float, parts[name]) for name in counted)  # counted: not None
        steps = sorted(
            (end, self.cfg.components[name] * value)
            for name in counted
            if outcomes[name].error is None
            for end, value in outcomes[name].steps
        )
        return Scored(total=float(total), parts=parts, errors=errors, steps=steps, gated=gated)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> RewardComposer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
