"""GuessNumber: a small text Gymnasium environment, the example of `recipes/gymnasium_guess.yaml`.

    task.name=gymnasium:reasonrl.envs.guess:GuessNumber  env.name=gymnasium

The environment thinks of an integer in a range of up to `high` numbers that starts anywhere from 1 to 100 (so
episodes begin with different prompts); each action is a guess (the last integer in the text),
answered with "higher", "lower" or "correct". Reward 1 when guessed, else 0; `info["is_success"]` says so, and
Gymnasium's time limit (max_steps, also the spec's max_episode_steps) truncates. Needs gymnasium
(`pip install -e ".[agents]"`): this module is imported only when the environment is made.
"""

from __future__ import annotations

import re
import string
from typing import Any

import gymnasium

_NUMBER = re.compile(r"-?\d+")


class GuessNumber(gymnasium.Env):
    """Guess the hidden integer in [low, low + width) from higher/lower hints, within max_steps guesses."""

    def __init__(self, high: int = 20, max_steps: int = 6) -> None:
        if high < 2 or max_steps < 1:
            raise ValueError(f"GuessNumber needs high >= 2 and max_steps >= 1, got high={high}, max_steps={max_steps}")
        self.high, self.max_steps = high, max_steps
        self.observation_space = gymnasium.spaces.Text(300, charset=string.printable)
        self.action_space = gymnasium.spaces.Text(2000, charset=string.printable)
        self.low, self.width, self.target, self.steps = 1, high, 1, 0

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.low = int(self.np_random.integers(1, 101))
        self.width = int(self.np_random.integers(max(2, self.high // 2), self.high + 1))
        self.target, self.steps = self.low + int(self.np_random.integers(0, self.width)), 0
        return (
            f"I am thinking of an integer from {self.low} to {self.low + self.width - 1}. Guess it: reply with "
            f"one number. You have {self.max_steps} guesses.",
            {},
        )

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        numbers = _NUMBER.findall(action)
        if not numbers:
            hint = "That is not a number. Reply with one integer."
        else:
            guess = int(numbers[-1])
            if guess == self.target:
                return "correct", 1.0, True, False, {"is_success": True}
            hint = f"{guess} is too low: higher." if guess < self.target else f"{guess} is too high: lower."
        return hint, 0.0, False, self.steps >= self.max_steps, {"is_success": False}
