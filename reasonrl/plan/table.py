"""Architectures `reasonrl plan` knows without a model directory: the shape fields of each model's published
config.json (Hugging Face), enough to count parameters, KV cache and activations. A local directory's own
config.json always wins; these are for planning a model that is not downloaded yet."""

from __future__ import annotations

# name: (vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, tied embeddings, qkv bias)
ARCHS: dict[str, tuple[int, int, int, int, int, int, int, bool, bool]] = {
    "smollm2-135m": (49152, 576, 1536, 30, 9, 3, 64, True, False),
    "smollm2-360m": (49152, 960, 2560, 32, 15, 5, 64, True, False),
    "smollm2-1.7b": (49152, 2048, 8192, 24, 32, 32, 64, True, False),
    "qwen2.5-0.5b": (151936, 896, 4864, 24, 14, 2, 64, True, True),
    "qwen2.5-1.5b": (151936, 1536, 8960, 28, 12, 2, 128, True, True),
    "qwen2.5-3b": (151936, 2048, 11008, 36, 16, 2, 128, True, True),
    "qwen2.5-7b": (152064, 3584, 18944, 28, 28, 4, 128, False, True),
    "qwen2.5-14b": (152064, 5120, 13824, 48, 40, 8, 128, False, True),
    "qwen3-0.6b": (151936, 1024, 3072, 28, 16, 8, 128, True, False),
    "qwen3-1.7b": (151936, 2048, 6144, 28, 16, 8, 128, True, False),
    "qwen3-4b": (151936, 2560, 9728, 36, 32, 8, 128, True, False),
    "qwen3-8b": (151936, 4096, 12288, 36, 32, 8, 128, False, False),
    "qwen3-14b": (151936, 5120, 17408, 40, 40, 8, 128, False, False),
    "llama-3.2-1b": (128256, 2048, 8192, 16, 32, 8, 64, True, False),
    "llama-3.2-3b": (128256, 3072, 8192, 28, 24, 8, 128, True, False),
    "llama-3.1-8b": (128256, 4096, 14336, 32, 32, 8, 128, False, False),
}

# model_type of each family, for random-weight models built from these shapes (bench/plan_grid.py)
MODEL_TYPES = {"smollm2": "llama", "qwen2.5": "qwen2", "qwen3": "qwen3", "llama": "llama"}


def arch_key(name: str) -> str | None:
    """The table's key for a model name or path: 'Qwen/Qwen2.5-7B-Instruct' and '/models/qwen2.5-7b' both give
    'qwen2.5-7b'; None when nothing matches."""
    base = name.rstrip("/").split("/")[-1].lower()
    for suffix in ("-instruct", "-base", "-chat", "-it"):
        base = base.removesuffix(suffix)
    base = base.replace("meta-llama-", "llama-").replace("llama3", "llama-3")
    return base if base in ARCHS else None


def hf_config(key: str, **extra: int) -> object:
    """A transformers config with a table shape (random-weight models: bench/plan_grid.py, tests)."""
    from transformers import AutoConfig

    vocab, hidden, inter, layers, heads, kv, head_dim, tied, _ = ARCHS[key]
    model_type = next(t for f, t in MODEL_TYPES.items() if key.startswith(f))
    return AutoConfig.for_model(
        model_type,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        tie_word_embeddings=tied,
        **extra,
    )
