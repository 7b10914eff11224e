"""reward_model: a local Hugging Face sequence-classification model scores (prompt, completion), in batches.

    rewards:
      components: {correct: 1.0, reward_model: 0.5}
      options: {reward_model: {path: /models/my-rm, batch_size: 16}}

Input: with a chat template, the prompt's messages plus the completion as the assistant turn; otherwise the
text pair (prompt messages joined by newlines, completion). Score: the single logit of a num_labels=1 model,
or the logit (output=logit) or softmax probability (output=prob) of `label` for a classifier.

Where it runs: in the trainer process, not in a reward worker (it is a @batched reward). A model wants the
accelerator, which the workers must not touch (they stay torch-free and cheap to restart), and batching,
which per-sample worker calls cannot do; one copy is loaded, not one per worker. It is loaded on the first
score() call, not when the composer is built (construction only checks that `path` holds a config.json),
and kept for the life of the process. A forward pass cannot hang the way parsing hostile text can; an
exception it raises is still handled by rewards.on_error.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrl.rewards import REWARDS, batched

if TYPE_CHECKING:
    from reasonrl.types import Example

OUTPUTS = ("logit", "prob")


@functools.lru_cache(maxsize=2)
def load(path: str, device: str, dtype: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, device) for a sequence-classification checkpoint; cached per (path, device, dtype)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer, device


def encode(tokenizer: Any, completions: list[str], examples: list[Example], max_length: int) -> Any:
    """A padded batch of (prompt, completion) inputs for the model."""
    if getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template(list(e.prompt) + [{"role": "assistant", "content": c}], tokenize=False)
            for c, e in zip(completions, examples)
        ]
        return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    prompts = ["\n".join(m["content"] for m in e.prompt) for e in examples]
    return tokenizer(
        prompts, completions, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt"
    )


def check_options(
    path: str,
    batch_size: int = 8,
    max_length: int = 1024,
    label: int | None = None,
    output: str = "logit",
    device: str = "auto",
    dtype: str = "float32",
) -> None:
    """Called when the reward composer is built: checks the options without loading the model."""
    where = "rewards.options.reward_model"
    if not (Path(path).expanduser() / "config.json").is_file():
        raise ValueError(
            f"{where}.path={path!r} is not a Hugging Face model directory (no config.json); give "
            "a local sequence-classification checkpoint"
        )
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"{where}: batch_size ({batch_size}) and max_length ({max_length}) must be >= 1")
    if output not in OUTPUTS:
        raise ValueError(f"{where}.output={output!r} is not one of {', '.join(OUTPUTS)}")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{where}.dtype={dtype!r} is not one of float32, bfloat16, float16")


@REWARDS.register("reward_model")
@batched
def reward_model(
    completions: list[str],
    examples: list[Example],
    path: str,
    batch_size: int = 8,
    max_length: int = 1024,
    label: int | None = None,
    output: str = "logit",
    device: str = "auto",
    dtype: str = "float32",
) -> list[float]:
    """Scores of a local sequence-classification model, batch_size completions per forward pass."""
    import torch

    model, tokenizer, device = load(str(Path(path).expanduser().resolve()), device, dtype)
    num_labels = model.config.num_labels
    if label is None and num_labels != 1:
        raise ValueError(f"reward model {path} has {num_labels} labels; set rewards.options.reward_model.label")
    index = 0 if label is None else label
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(completions), batch_size):
            batch = encode(
                tokenizer, completions[start : start + batch_size], examples[start : start + batch_size], max_length
            ).to(device)
            logits = model(**batch).logits.float()  # (b, num_labels)
            values = logits.softmax(-1)[:, index] if output == "prob" else logits[:, index]  # (b,)
            scores.extend(values.tolist())
    return scores


reward_model.check_options = check_options  # type: ignore[attr-defined]
