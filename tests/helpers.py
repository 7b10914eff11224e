"""Shared helpers for tests: a toy JSONL task and a tiny-model run config."""

import json
from pathlib import Path

from reasonrl.config import load_config

TOY_REWARD = str(Path(__file__).parent / "toy_rewards.py") + ":digits"


def toy_task(tmp_path: Path, n: int = 40) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"say {i}", "answer": str(i)}) + "\n" for i in range(n)))
    return path


def tiny_config(tmp_path: Path, *overrides: str):
    return load_config(None, tiny_overrides(tmp_path, *overrides))


def tiny_overrides(tmp_path: Path, *overrides: str) -> list[str]:
    """CLI overrides for a tiny-model run on the toy task (a few seconds for tens of steps)."""
    return [
        "model.path=tiny:llama",
        "model.dtype=float32",
        "lora.rank=8",
        f"output_dir={tmp_path / 'runs'}",
        "name=tiny",
        "task.name=jsonl",
        f"task.path={toy_task(tmp_path)}",
        "task.eval_size=8",
        "task.instruction=",
        f"rewards.components={{{TOY_REWARD}: 1.0}}",
        "rewards.workers=1",
        "sampling.max_new_tokens=8",
        "prompts_per_step=4",
        "samples_per_prompt=4",
        "optim.micro_batch_size=8",
        "optim.lr=0.01",
        "optim.warmup_steps=0",
        "eval.temperature=1.0",
        "eval.samples=2",
        "threads=1",
        *overrides,
    ]


def tiny_hf_checkpoint(path: Path, words: list[str], head: str, hidden: int = 16, **config: int) -> Path:
    """A random one-layer Llama (`head`: 'causal' or 'classifier', one label) and a word-level tokenizer over
    `words` (the first two are [PAD] and [UNK]), saved like a Hugging Face checkpoint in `path`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(path)
    torch.manual_seed(0)
    settings = dict(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, intermediate_size=2 * hidden)
    llama = LlamaConfig(vocab_size=len(words), pad_token_id=0, **(settings | config))
    model = LlamaForSequenceClassification(llama) if head == "classifier" else LlamaForCausalLM(llama)
    model.save_pretrained(path)
    return path
