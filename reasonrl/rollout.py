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
        if result.reward_steps and not math.isnan(result.reward) and any(t.mask):
            t.step_rewards, t.step_token_ends = token_steps(tokenizer, t, result.reward_steps)
    return trajectories


def char_to_token_ends(tokenizer: Any, ids: list[int], char_ends: list[int]) -> list[int]:
    """For each character offset into decode(ids), the index in ids of the token that completes it: the
    smallest k with len(decode(ids[:k+1])) >= offset (binary search over decoded prefix lengths)."""
    lengths: dict[int, int] = {}

    def decoded(k: int) -> int:
        if k not in lengths:
            lengths[k] = len(tokenizer.decode(ids[:k], skip_special_tokens=True))
        return lengths[k]

    out = []
    for end in char_ends:
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if decoded(mid) >= end:
                hi = mid
            else:
                lo = mid + 1
        out.append(lo - 1)
    return out


def token_steps(tokenizer: Any, t: Trajectory, steps: list[tuple[int, float]]) -> tuple[list[float], list[int]]:
    """Per-step rewards and the index in t.tokens where each step ends: every reported step at the token
    where its text ends (steps ending on one token are summed), and the rest of t.reward (the outcome
    components) at the last sampled token. The step rewards sum to t.reward."""
    first = t.mask.index(True)
    ids = t.tokens[first:]
    by_token: dict[int, float] = {}
    for index, (_, value) in zip(char_to_token_ends(tokenizer, ids, [end for end, _ in steps]), steps):
        by_token[first + index] = by_token.get(first + index, 0.0) + value
    last = len(t.tokens) - 1
    by_token[last] = by_token.get(last, 0.0) + t.reward - sum(value for _, value in steps)
    ends = sorted(by_token)
    return [by_token[e] for e in ends], ends


def drop_failed_groups(trajectories: list[Trajectory], n: int) -> list[Trajectory]:
    """Remove whole groups that contain a sample whose reward failed (NaN, rewards.on_error=drop_group)."""
    keep: list[Trajectory] = []
    for start in range(0, len(trajectories), n):
        group = trajectories[start:start + n]
        if not any(math.isnan(t.reward) for t in group):
            keep.extend(group)
    return keep
