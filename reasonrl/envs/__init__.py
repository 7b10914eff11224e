"""Environments on text, Gymnasium-style: one object per episode.

    env = make(example)                  # the factory ENVS.get(name)(EnvContext, **options) returns
    messages = env.reset(example)        # the conversation the policy answers first
    key = env.state_key()                # the current state, for grouping identical states (GiGPO);
                                         # "" keys it by the last observation shown
    result = env.step(action_text)       # StepResult(observation, reward, done, info, ...)

A single-turn task is the one-step case: reset shows the question, step scores the answer and ends.
rollout.py owns the tokens: observations are appended as tokens the policy is not trained on.
Environments whose steps are cheaper together (reward workers, one sandbox call) override `step_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from reasonrl.registry import Registry
from reasonrl.types import Example, Message, StepResult

if TYPE_CHECKING:
    from reasonrl.rewards.compose import RewardComposer


@dataclass
class EnvContext:
    """What a run shares with its environments: the reward composer and the environment limits."""

    rewards: RewardComposer | None = None
    max_turns: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    max_turns_set: bool = False
    """env.max_turns came from the config (else from the environment: its own limit, or default_max_turns)."""


class Env(Protocol):
    def reset(self, example: Example) -> list[Message]: ...

    def step(self, action: str) -> StepResult: ...

    def state_key(self) -> str: ...

    def close(self) -> None: ...


class BaseEnv:
    """Defaults for an episode: state key = the last message shown, stepping one episode at a time."""

    def __init__(self, ctx: EnvContext) -> None:
        self.ctx = ctx
        self.example: Example | None = None
        self.messages: list[Message] = []

    def reset(self, example: Example) -> list[Message]:
        self.example, self.messages = example, list(example.prompt)
        return list(self.messages)

    def step(self, action: str) -> StepResult:
        raise NotImplementedError

    def state_key(self) -> str:
        """ "" means: the rollout keys the state by the last observation it showed the policy (identical
        observations, identical states). Environments with hidden state override this."""
        return ""

    def close(self) -> None:
        pass

    @classmethod
    def step_batch(cls, envs: list[BaseEnv], actions: list[str]) -> list[StepResult]:
        return [env.step(action) for env, action in zip(envs, actions)]


def step_all(envs: list[Any], actions: list[str]) -> list[StepResult]:
    """Step every episode, in one call per environment class (batched where the class supports it)."""
    results: list[StepResult | None] = [None] * len(envs)
    by_class: dict[type, list[int]] = {}
    for i, env in enumerate(envs):
        by_class.setdefault(type(env), []).append(i)
    for cls, index in by_class.items():
        batch = getattr(cls, "step_batch", None)
        out = (
            batch([envs[i] for i in index], [actions[i] for i in index])
            if batch is not None
            else [envs[i].step(actions[i]) for i in index]
        )
        for i, r in zip(index, out):
            results[i] = r
    return results  # type: ignore[return-value]


ENVS: Registry = Registry("environment")


class Environment:
    """A run's environment: makes one fresh episode per rollout row, owns what the episodes share."""

    def __init__(
        self, name: str, ctx: EnvContext, max_turns: int | None = None, max_context_tokens: int | None = None
    ) -> None:
        self.name, self.ctx, self.cls = name, ctx, ENVS.get(name)
        own = getattr(self.cls, "own_max_turns", None)  # the environment's own limit, where it has one
        limit: int | None = own(ctx.options) if own else None
        default = limit or int(getattr(self.cls, "default_max_turns", 1))
        self.max_turns = max_turns or default
        self.max_context_tokens = max_context_tokens
        self.ctx.max_turns, self.ctx.max_turns_set = self.max_turns, max_turns is not None
        self.make().close()  # a bad option fails at start-up, not mid-run

    def make(self) -> Env:
        return self.cls(self.ctx, **self.ctx.options)

    def close(self) -> None:
        if self.ctx.rewards is not None:
            self.ctx.rewards.close()


def make_environment(cfg: Any) -> Environment:
    """The Environment a RunConfig asks for (env.* keys), with the run's rewards."""
    from reasonrl.rewards.compose import RewardComposer

    ctx = EnvContext(rewards=RewardComposer(cfg.rewards), options=dict(cfg.env.options))
    try:
        return Environment(cfg.env.name, ctx, cfg.env.max_turns, cfg.env.max_context_tokens)
    except Exception:
        ctx.rewards.close()  # type: ignore[union-attr]
        raise


from reasonrl.envs import adapters, coding, corridor, single_turn, sokoban, tools  # noqa: E402,F401  (register)
