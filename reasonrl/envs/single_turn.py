"""The one-step environment: the prompt is the example's conversation, the action is scored by the rewards."""

from __future__ import annotations

from reasonrl.envs import ENVS, BaseEnv, EnvContext
from reasonrl.types import StepResult


@ENVS.register("single_turn")
class SingleTurnEnv(BaseEnv):
    """reset shows example.prompt; step scores the answer with the run's rewards and ends the episode."""

    def __init__(self, ctx: EnvContext) -> None:
        super().__init__(ctx)
        if ctx.rewards is None:
            raise ValueError("the single_turn environment needs the run's rewards (EnvContext.rewards)")

    def step(self, action: str) -> StepResult:
        return self.step_batch([self], [action])[0]

    @classmethod
    def step_batch(cls, envs: list[BaseEnv], actions: list[str]) -> list[StepResult]:
        """Score every action at once (rewards run in parallel worker processes)."""
        rewards = envs[0].ctx.rewards
        scored = rewards.score(actions, [e.example for e in envs])  # type: ignore[union-attr,misc]
        return [
            StepResult(
                observation=None,
                reward=s.total if s.total is not None else float("nan"),
                done=True,
                reward_parts=s.parts,
                reward_steps=s.steps,
                info={"errors": s.errors, "dropped": s.total is None, "gated": s.gated},
            )
            for s in scored
        ]
