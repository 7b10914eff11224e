"""corridor: a multi-turn toy environment, a walk on a line to a goal cell, small enough for a tiny random model.

    reasonrl train recipes/gigpo.yaml                 # env.name=corridor task.name=corridor algo.advantage=gigpo

Each turn the policy sees where it stands and where the goal is ("You are at 3. The goal is at 5, 2 to the
right") and answers with a move: L steps left, R steps right. Reaching the goal ends the episode with reward 1
(reward part 'correct', so eval accuracy is the success rate); otherwise the reward is 0 and the episode ends
at env.max_turns (default 4). The state is the position, so the samples of a group revisit the same states
and GiGPO's anchor-state groups are large.

An untrained model rarely writes L or R, so by default any other first character is a move too, by the parity
of its code point (odd: right, even: left): an untrained policy then performs a random walk, with success rate
about 0.38 for a goal 2 cells away in 4 turns. env.options={strict: true} makes any other reply (and an empty
one) a wasted turn instead.
"""

from __future__ import annotations

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.types import Example, Message, StepResult


def describe(position: int, goal: int) -> str:
    """The observation of a state (the prompt's last line, then the message after every move)."""
    side = "right" if goal > position else "left"
    return f"You are at {position}. The goal is at {goal}, {abs(goal - position)} to the {side}"


def parse_move(action: str, strict: bool) -> int:
    """-1 (left), +1 (right) or 0 (no move) from the first non-space character of the reply."""
    text = action.strip()
    if not text:
        return 0
    first = text[0]
    if first in "Ll":
        return -1
    if first in "Rr":
        return 1
    return 0 if strict else (1 if ord(first) % 2 else -1)


@ENVS.register("corridor")
class CorridorEnv(BaseEnv):
    """One walk from example.metadata['start'] to example.metadata['goal']; the state key is the position."""

    default_max_turns = 4

    def __init__(self, ctx: EnvContext, strict: bool = False) -> None:
        super().__init__(ctx)
        if not isinstance(strict, bool):
            raise ValueError(f"env.options.strict must be true or false, got {strict!r}")
        self.strict = strict
        self.position = self.goal = 0

    def reset(self, example: Example) -> list[Message]:
        if "start" not in example.metadata or "goal" not in example.metadata:
            raise ValueError(
                f"env.name=corridor needs examples with metadata start and goal (task.name=corridor); "
                f"example {example.id!r} has {sorted(example.metadata)}"
            )
        self.position, self.goal = int(example.metadata["start"]), int(example.metadata["goal"])
        return super().reset(example)

    def state_key(self) -> str:
        return f"{self.position}->{self.goal}"

    def step(self, action: str) -> StepResult:
        move = parse_move(action, self.strict)
        self.position += move
        done = self.position == self.goal
        observation: list[Message] = [{"role": "user", "content": describe(self.position, self.goal)}]
        self.messages += [Message(role="assistant", content=action)] + observation
        return StepResult(
            observation=None if done else observation,
            reward=float(done),
            done=done,
            reward_parts={"correct": float(done)},
        )
