"""The one-step environment: the prompt is the example's conversation, the action is scored by the rewards."""
from __future__ import annotations

from reasonrl.envs import ENVS, Episode
from reasonrl.rewards.compose import RewardComposer
from reasonrl.types import Example, Message, StepResult


@ENVS.register("single_turn")
class SingleTurnEnv:
    max_turns = 1

    def __init__(self, rewards: RewardComposer) -> None:
        self.rewards = rewards

    def reset(self, example: Example) -> list[Message]:
        return list(example.prompt)

    def step(self, episodes: list[Episode], actions: list[str]) -> list[StepResult]:
        """Score every action at once (rewards run in parallel worker processes)."""
        scored = self.rewards.score(actions, [e.example for e in episodes])
        return [StepResult(observation=None, reward=s.total if s.total is not None else float("nan"), done=True,
                           reward_parts=s.parts, reward_steps=s.steps,
                           info={"errors": s.errors, "dropped": s.total is None, "gated": s.gated})
                for s in scored]

    def close(self) -> None:
        self.rewards.close()
