"""Environments on text, Gymnasium-like and batched: reset(example) -> messages; step(episodes, actions) -> results.

A single-turn task is the one-step case: reset shows the question, step scores the answer and ends.
Multi-turn environments return done=False with an observation to append; rollout.py builds the tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from reasonrl.registry import Registry
from reasonrl.types import Example, Message, StepResult


@dataclass
class Episode:
    """The state of one running episode, as the environment sees it."""

    example: Example
    messages: list[Message]
    actions: list[str] = field(default_factory=list)


class Env(Protocol):
    max_turns: int

    def reset(self, example: Example) -> list[Message]:
        ...

    def step(self, episodes: list[Episode], actions: list[str]) -> list[StepResult]:
        ...

    def close(self) -> None:
        ...


ENVS: Registry = Registry("environment")

from reasonrl.envs import single_turn  # noqa: E402,F401  (registers "single_turn")
