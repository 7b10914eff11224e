"""Rollout: examples -> trajectories. The only place that builds token masks.

For each example the environment's conversation is encoded with the chat template, the engine samples n
completions, and the environment scores them. Prompt tokens get mask False, sampled tokens (including the
stop token, so stopping is learned) get mask True.
"""
from __future__ import annotations

import math
import time
from typing import Any

from reasonrl.engine import Engine, SamplingParams
from reasonrl.envs import Env, Episode
from reasonrl.tokenizer import encode_chat
from reasonrl.types import Example, Trajectory


def rollout(env: Env, engine: Engine, tokenizer: Any, examples: list[Example], n: int,
            params: SamplingParams, seed: int, timings: dict[str, float] | None = None) -> list[Trajectory]:
    """n trajectories per example, grouped contiguously (group g = rows g*n .. g*n+n-1).

    timings, when given, receives the seconds spent in generation ("generate") and scoring ("reward")."""
    timings = {} if timings is None else timings
    t0 = time.time()
    conversations = [env.reset(ex) for ex in examples]
    prompts = [encode_chat(tokenizer, conv) for conv in conversations]
    groups = engine.generate(prompts, params, n=n, seed=seed)
    t1 = time.time()
    trajectories: list[Trajectory] = []
    for g, (example, prompt, completions) in enumerate(zip(examples, prompts, groups)):
        for c in completions:
            trajectories.append(Trajectory(
                example=example, group=g,
                tokens=prompt + c.token_ids,
                mask=[False] * len(prompt) + [True] * len(c.token_ids),
                sampler_logp=[0.0] * len(prompt) + c.logprobs,
                completion=tokenizer.decode(c.token_ids, skip_special_tokens=True),
                truncated=not c.finished))
    episodes = [Episode(t.example, list(conv)) for t, conv in
                zip(trajectories, (conv for conv in conversations for _ in range(n)))]
    results = env.step(episodes, [t.completion for t in trajectories])
    timings["generate"], timings["reward"] = t1 - t0, time.time() - t1
    for t, result in zip(trajectories, results):
        if not result.done:
            raise ValueError(f"environment {type(env).__name__} did not finish after one turn; multi-turn "
                             "environments need the multi-turn rollout")
        t.reward, t.reward_parts, t.step_rewards = result.reward, result.reward_parts, [result.reward]
        t.info = result.info
    return trajectories


def drop_failed_groups(trajectories: list[Trajectory], n: int) -> list[Trajectory]:
    """Remove whole groups that contain a sample whose reward failed (NaN, rewards.on_error=drop_group)."""
    keep: list[Trajectory] = []
    for start in range(0, len(trajectories), n):
        group = trajectories[start:start + n]
        if not any(math.isnan(t.reward) for t in group):
            keep.extend(group)
    return keep
