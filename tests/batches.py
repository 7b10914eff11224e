"""Hand-made batches for the algorithm tests, built through `collate` from synthetic trajectories."""

from __future__ import annotations

import torch

from reasonrl.types import Batch, Example, Trajectory, collate


def make_batch(
    rewards: list[float],
    group_size: int,
    lengths: list[int] | None = None,
    width: int = 5,
    steps: list[list[tuple[int, float]]] | None = None,
    values: torch.Tensor | None = None,
) -> Batch:
    """Rows of `width` positions whose last lengths[i] are sampled (mask True), prompt tokens before them.

    steps[i] = [(position, reward), ...] gives row i's step rewards at (B, T) positions (token index + 1 in the
    trajectory); without it each row is one step rewarded with its reward. values default to zeros."""
    trajectories = []
    for i, reward in enumerate(rewards):
        n = lengths[i] if lengths else width
        prompt = width + 1 - n
        step = steps[i] if steps else []
        trajectories.append(
            Trajectory(
                example=Example(id=str(i), prompt=[]),
                group=i // group_size,
                tokens=[5] * (width + 1),
                mask=[False] * prompt + [True] * n,
                sampler_logp=[0.0] * (width + 1),
                completion="",
                reward=reward,
                step_rewards=[r for _, r in step],
                step_token_ends=[p + 1 for p, _ in step],
            )
        )
    batch = collate(trajectories, pad_id=0, group_size=group_size)
    batch.values = torch.zeros(batch.mask.shape) if values is None else values
    return batch


def make_multiturn_batch(
    episodes: list[list[tuple[int, float, str]]], group_size: int, prompt: int = 2, observation: int = 2
) -> Batch:
    """One row per episode, each turn (sampled tokens, step reward, state key): a prompt of `prompt` tokens, then
    per turn its sampled tokens (mask True) and, between turns, `observation` environment tokens (mask False).
    The reward is the sum of the step rewards, as rollout() books it."""
    trajectories = []
    for i, turns in enumerate(episodes):
        tokens, mask, ends = [1] * prompt, [False] * prompt, []
        for k, (n, _, _) in enumerate(turns):
            if k:
                tokens, mask = tokens + [4] * observation, mask + [False] * observation
            tokens, mask = tokens + [5] * n, mask + [True] * n
            ends.append(len(tokens) - 1)
        rewards = [r for _, r, _ in turns]
        trajectories.append(
            Trajectory(
                example=Example(id=str(i), prompt=[]),
                group=i // group_size,
                tokens=tokens,
                mask=mask,
                sampler_logp=[0.0] * len(tokens),
                completion="",
                reward=sum(rewards),
                step_rewards=rewards,
                step_token_ends=ends,
                step_states=[s for _, _, s in turns],
                num_turns=len(turns),
            )
        )
    batch = collate(trajectories, pad_id=0, group_size=group_size)
    batch.values = torch.zeros(batch.mask.shape)
    return batch
