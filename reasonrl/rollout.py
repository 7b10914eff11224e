"""Rollout: examples -> trajectories. The only place that builds token masks.

Token in, token out: a trajectory's tokens are the chat-templated prompt, then for every turn the tokens the
policy sampled (mask True, with the stop token, so stopping is learned) followed by the environment's
observation encoded once as new tokens (mask False). Nothing sampled is ever re-tokenised, so the tokens the
policy is trained on are exactly the tokens it produced.

Turn 0 samples the n completions of each example from one shared prompt prefill; later turns sample one
continuation per still-running episode, and the engine (engine.hf.prefix_cache) prefills only the tokens that
are new since the episode's previous turn.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reasonrl.engine import Engine, SamplingParams
from reasonrl.envs import Env, Environment, step_all
from reasonrl.tokenizer import encode_chat, observation_tokens, turn_end_token
from reasonrl.types import Example, Trajectory


@dataclass
class Running:
    """One episode in progress."""

    env: Env
    example: Example
    group: int
    sample: int
    """Which of its group's n samples this is."""
    tokens: list[int]
    mask: list[bool]
    logp: list[float]
    texts: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    parts: dict[str, float | None] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    reward_steps: list[tuple[int, float]] = field(default_factory=list)
    observed: str = ""
    """Hash of the last observation shown (the prompt, then each environment reply): the default state key."""
    truncated: bool = False
    done: bool = False


def rollout(
    env: Environment,
    engine: Engine,
    tokenizer: Any,
    examples: list[Example],
    n: int,
    params: SamplingParams,
    seed: int | list[int],
    timings: dict[str, float] | None = None,
) -> list[Trajectory]:
    """n trajectories per example, grouped contiguously (group g = rows g*n .. g*n+n-1). seed: one for the
    call, or one per example (what each example samples is then the same whatever else is in the batch).

    timings, when given, receives the seconds spent in generation ("generate") and in the environment
    ("reward")."""
    timings = {} if timings is None else timings
    timings.setdefault("generate", 0.0)
    timings.setdefault("reward", 0.0)
    episodes = start_episodes(env.make, tokenizer, examples, n)
    try:
        for turn in range(env.max_turns):
            live = [e for e in episodes if not e.done]
            if not live:
                break
            t0 = time.time()
            more = turn + 1 < env.max_turns  # the engine keeps this turn's KV for the next one
            if turn == 0:  # the n samples of an example share one prompt: prefill it once
                groups = engine.generate(
                    [episodes[g * n].tokens for g in range(len(examples))], params, n=n, seed=seed, keep=more
                )
                completions = [c for group in groups for c in group]
            else:
                seeds = (
                    seed + 7919 * turn
                    if isinstance(seed, int)
                    else [(seed[e.group] * 7919 + turn) * 131 + e.sample for e in live]
                )
                completions = [
                    g[0] for g in engine.generate([e.tokens for e in live], params, n=1, seed=seeds, keep=more)
                ]
            t1 = time.time()
            texts = [tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in completions]
            for e, c, text in zip(live, completions, texts):
                e.states.append(e.env.state_key() or e.observed)
                e.tokens += c.token_ids
                e.mask += [True] * len(c.token_ids)
                e.logp += c.logprobs
                e.texts.append(text)
                e.ends.append(len(e.tokens) - 1)
                e.truncated = not c.finished
            results = step_all([e.env for e in live], texts)
            timings["generate"] += t1 - t0
            timings["reward"] += time.time() - t1
            for e, c, result in zip(live, completions, results):
                record_step(
                    e,
                    result,
                    tokenizer,
                    c.finished,
                    turn + 1 == env.max_turns,
                    room(env.max_context_tokens, params.max_new_tokens),
                )
    finally:
        for e in episodes:
            e.env.close()
    return [finish(e, tokenizer) for e in episodes]


def digest(ids: list[int]) -> str:
    return hashlib.sha1(str(ids).encode()).hexdigest()[:16]


def start_episodes(make_env: Callable[[], Env], tokenizer: Any, examples: list[Example], n: int) -> list[Running]:
    """One reset episode per sample. If a reset fails, the episodes made so far are closed (they may hold
    temporary directories or processes) before the error propagates."""
    episodes: list[Running] = []
    try:
        for g, example in enumerate(examples):
            first = None
            for j in range(n):
                episode = Running(env=make_env(), example=example, group=g, sample=j, tokens=[], mask=[], logp=[])
                episodes.append(episode)
                prompt = encode_chat(tokenizer, episode.env.reset(example))
                if first is not None and prompt != first:
                    raise ValueError(
                        f"environment {type(episode.env).__name__}: reset({example.id}) gave different "
                        "first observations; the samples of a group must start from the same prompt"
                    )
                first = prompt
                episode.tokens, episode.mask, episode.logp = list(prompt), [False] * len(prompt), [0.0] * len(prompt)
                episode.observed = digest(prompt)
    except BaseException:
        for episode in episodes:
            episode.env.close()
        raise
    return episodes


def room(max_context: int | None, max_new_tokens: int) -> int | None:
    """Longest conversation that still leaves a whole turn of room before the context limit."""
    return None if max_context is None else max_context - max_new_tokens


def record_step(
    e: Running, result: Any, tokenizer: Any, finished: bool, last_turn: bool, max_context: int | None
) -> None:
    """Book one step's reward and, if the episode goes on, append the observation as untrained tokens."""
    e.rewards.append(result.reward)
    for name, value in result.reward_parts.items():
        if value is not None or name not in e.parts:
            old = e.parts.get(name)
            e.parts[name] = value if old is None else old + (value or 0.0)
    for key, value in result.info.items():
        e.info[key] = e.info.get(key, []) + value if isinstance(value, list) else value
    if len(e.rewards) == 1:
        e.reward_steps = list(result.reward_steps)
    if result.done or last_turn or math.isnan(result.reward):
        e.done = True
        e.info.setdefault("turn_limit", not result.done)
        return
    extra = [] if finished else [turn_end_token(tokenizer)]  # close a turn cut at the token limit
    obs = extra + observation_tokens(tokenizer, result.observation or [])
    if max_context is not None and len(e.tokens) + len(obs) > max_context:
        e.done, e.truncated = True, True
        e.info["context_limit"] = True
        return
    e.tokens += obs
    e.observed = digest(obs[len(extra) :])  # a cut turn does not make the same state look new
    e.mask += [False] * len(obs)
    e.logp += [0.0] * len(obs)


def finish(e: Running, tokenizer: Any) -> Trajectory:
    t = Trajectory(
        example=e.example,
        group=e.group,
        tokens=e.tokens,
        mask=e.mask,
        sampler_logp=e.logp,
        completion="\n".join(e.texts),
        truncated=e.truncated,
        num_turns=len(e.texts),
        reward=sum(e.rewards),
        reward_parts=e.parts,
        step_rewards=list(e.rewards),
        info=e.info,
    )
    if len(e.texts) > 1:
        t.step_token_ends, t.step_states = list(e.ends), list(e.states)
    elif e.reward_steps and not math.isnan(t.reward) and any(t.mask):
        t.step_rewards, t.step_token_ends = token_steps(tokenizer, t, e.reward_steps)
    else:
        t.step_states = list(e.states)
    return t


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
