"""The shape of a decoder-only transformer, from a config.json or the shipped table (reasonrl/plan/table.py), and
what it costs: parameters, LoRA parameters, KV cache, and the activations autograd saves per token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig
from reasonrl.plan.table import ARCHS, MODEL_TYPES, arch_key


@dataclass(frozen=True)
class Arch:
    """The shape of a decoder-only transformer (the fields of config.json that size its memory)."""

    name: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool = False
    qk_norm: bool = False  # Qwen3: an RMSNorm on each head's queries and keys

    @classmethod
    def from_table(cls, key: str) -> Arch:
        family = next(f for f in MODEL_TYPES if key.startswith(f))
        return cls(key, *ARCHS[key], qk_norm=MODEL_TYPES[family] == "qwen3")

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str) -> Arch:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return cls(
            name=name,
            vocab=int(config["vocab_size"]),
            hidden=hidden,
            intermediate=int(config["intermediate_size"]),
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            tied=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
            qk_norm=config.get("model_type") == "qwen3",
        )

    @property
    def q(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv(self) -> int:
        return self.kv_heads * self.head_dim

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, self.q),
            "k_proj": (h, self.kv),
            "v_proj": (h, self.kv),
            "o_proj": (self.q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.linears().values()) + 2 * self.hidden
        per_layer += (self.q + 2 * self.kv) * self.qkv_bias + 2 * self.head_dim * self.qk_norm
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return embeddings + self.layers * per_layer + self.hidden

    def linear_params(self) -> int:
        """Parameters of the decoder layers' linear layers (what the engine's transposed copy rewrites)."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    def lora_params(self, rank: int, targets: str | list[str]) -> int:
        chosen = (
            self.linears() if targets == "all-linear" else {k: v for k, v in self.linears().items() if k in targets}
        )
        return self.layers * sum(rank * (a + b) for a, b in chosen.values())

    def kv_cache(self, tokens: int, dtype_bytes: int) -> int:
        """Bytes of keys and values for `tokens` positions (summed over sequences)."""
        return tokens * self.layers * 2 * self.kv * dtype_bytes

    def saved_per_token(self, dtype_bytes: int, rank: int | None) -> int:
        """Bytes autograd keeps per token per layer for the backward pass, besides the attention's keys and
        values (they depend on the path: see update_parts). rank None: full fine-tuning. Counted from the saved
        tensors of Llama, Qwen2 and Qwen3 layers (tests/unit/test_plan.py recounts them on real passes):
        the MLP's four intermediate-wide tensors, the norms' and projections' hidden-wide inputs, the queries
        and the attention output, the LoRA branches' rank-wide middles, and float32 logsumexps and norm scales."""
        b, h = dtype_bytes, self.hidden
        layer = (4 * self.intermediate + 2 * self.q) * b + 4 * (self.heads + 2)
        layer += 4 * h * b + 7 * rank * b if rank is not None else 6 * h * b
        if self.qk_norm:  # the norms' inputs (and outputs when the projections train) and their scales
            layer += (self.q + self.kv) * b * (1 if rank is not None else 2) + 4 * (self.heads + self.kv_heads)
        return layer


def resolve_arch(cfg: RunConfig, arch: str | None = None) -> Arch:
    """The model's shape: --arch from the table, the tiny test model, or model.path's config.json (the bundled
    model's table entry until its first conversion); a path that does not exist yet by its name in the table."""
    from reasonrl.model import BUNDLED, TINY

    if arch is not None:
        if arch not in ARCHS:
            raise ValueError(f"--arch {arch!r} is not in the table; known: {', '.join(ARCHS)}")
        return Arch.from_table(arch)
    if cfg.model.path == TINY:
        from reasonrl.tokenizer import ByteTokenizer

        return Arch("tiny:llama", ByteTokenizer.vocab_size, 32, 64, 2, 4, 2, 8, False)
    if cfg.model.path == BUNDLED:
        from reasonrl.model_files import bundled_model_dir

        config = bundled_model_dir().parent / "smollm2-135m-instruct" / "config.json"  # no conversion here
        if not config.is_file():
            return Arch.from_table("smollm2-135m")
    else:
        config = Path(cfg.model.path).expanduser() / "config.json"
    if config.is_file():
        return Arch.from_config(json.loads(config.read_text()), cfg.model.path)
    key = arch_key(cfg.model.path)
    if key is None:
        raise ValueError(
            f"model.path {cfg.model.path!r}: no config.json there and no architecture of that name in the "
            f"table; give a local model directory, or name its architecture with --arch (one of {', '.join(ARCHS)})"
        )
    return Arch.from_table(key)
