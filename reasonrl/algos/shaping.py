"""Reward shaping applied to trajectories before grouping: DAPO's soft overlong punishment (arXiv:2503.14476).

    R_len(y) = 0                                  if |y| <= L_max - L_cache
             = ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max
             = -1                                 if |y| > L_max
L_max = sampling.max_new_tokens, L_cache = algo.overlong.buffer, scaled by algo.overlong.penalty. It is added to
the reward and logged as reward/overlong.
"""

from __future__ import annotations

from reasonrl.config import OverlongConfig
from reasonrl.types import Trajectory


def overlong_penalty(length: int, max_len: int, buffer: int, penalty: float = 1.0) -> float:
    """The (<= 0) reward added to a completion of `length` sampled tokens; 0 when buffer is 0 (off)."""
    start = max_len - buffer
    if buffer <= 0 or length <= start:
        return 0.0
    return -penalty * min(length - start, buffer) / buffer


def shape_overlong(trajectories: list[Trajectory], max_len: int, cfg: OverlongConfig) -> None:
    """Add the overlong penalty to each trajectory's reward in place (and to reward_parts['overlong']). With
    per-step rewards it goes to the last step, which ends on the last token, so the steps still sum to the reward."""
    if cfg.buffer <= 0:
        return
    for t in trajectories:
        value = overlong_penalty(t.completion_tokens, max_len, cfg.buffer, cfg.penalty)
        t.reward += value
        t.reward_parts = {**t.reward_parts, "overlong": value}
        if t.step_token_ends:
            t.step_rewards = [*t.step_rewards[:-1], t.step_rewards[-1] + value]
