"""Rollout engines: turn prompt token ids into sampled completions with their sampler log-probs.

An engine is built from config, ENGINES.get(name)(model_cfg, lora_cfg, engine_cfg, tokenizer, shared=None), and
holds its own model (`shared`: a policy in the same process whose frozen weights it may read). Protocol:
    generate(prompts, params, n, seed, keep=False, adapter=True)
                                       -> for each prompt, n Completions (token ids, log-probs, finished); seed
                                          is one int for the call or one per prompt (then a row's samples do
                                          not depend on the rest of the batch); with
                                          keep, the engine may keep each row's KV for a later prompt that
                                          extends prompt + completion (a hint: engines without it ignore it);
                                          adapter=False samples the base model (LoRA only: the forgetting
                                          monitor's reference)
    update_weights(WeightUpdate)       -> serve that policy version from now on (reasonrl/weights.py)
    version                            -> the version it serves
    sleep() / wake()                   -> release / take back accelerator memory around the update (no-ops
                                          where meaningless)
    close()                            -> free what the engine holds outside Python objects
    pad_id                             -> the tokenizer's padding id
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


Progress = Callable[[int, int, list[list[Completion]]], None]
"""Called by an engine that samples in chunks with (prompts done, prompts, the completions so far, per prompt)."""


class Engine(Protocol):
    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        n: int,
        seed: int | Sequence[int],
        keep: bool = False,
        adapter: bool = True,
    ) -> list[list[Completion]]: ...

    def update_weights(self, update: Any) -> None: ...


ENGINES: Registry[Any] = Registry("engine")

from reasonrl.engine import hf, vllm  # noqa: E402,F401  (registers "hf" and "vllm"; vllm imports vLLM only when built)
