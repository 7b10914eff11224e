"""Rollout engines: turn prompt token ids into sampled completions with their sampler log-probs.

Engine protocol:
    generate(prompts, params, n, seed, keep=False)
                                       -> for each prompt, n Completions (token ids, log-probs, finished); with
                                          keep, the engine may keep each row's KV for a later prompt that
                                          extends prompt + completion (a hint: engines without it ignore it)
    sync_weights(policy)               -> make the engine sample from the policy's current weights
The HF engine samples from the training model itself (colocated, nothing to sync); a vLLM engine copies the
adapter over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from reasonrl.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    min_new_tokens: int = 0
    """Stop tokens are not sampled before this many tokens (fixed-length benchmarks); like top_p, this changes
    where samples come from, not the reported log-probs."""


@dataclass
class Completion:
    token_ids: list[int]
    """Sampled tokens, including the stop token when the completion finished."""
    logprobs: list[float]
    """Sampler log-prob of each token, under softmax(logits / temperature) (temperature 1 when greedy)."""
    finished: bool
    """True when a stop token ended it, False when it hit max_new_tokens."""


class Engine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int,
                 keep: bool = False) -> list[list[Completion]]:
        ...

    def sync_weights(self, policy: Any) -> None:
        ...


ENGINES: Registry[Any] = Registry("engine")

from reasonrl.engine import hf  # noqa: E402,F401  (registers "hf")
