"""Forgetting measures, pure functions the monitor (forgetting.py) is built from: a mean and its standard error,
retention against step 0, the KL budget test, per-completion KL on fixed samples (the estimators are kl_terms and
sequence_sum in algos/kl.py), and the log-likelihood of held-out general text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from reasonrl.algos.kl import kl_terms, sequence_sum
from reasonrl.engine import Completion

TEXT_FILE = Path(__file__).parent / "data" / "general_text.txt"
"""Held-out general English prose written for this project (forget.text='bundled')."""


def mean_and_se(values: Tensor) -> tuple[float, float]:
    """(N,) per-completion estimates -> their mean and its standard error (0 for a single value)."""
    n = values.numel()
    se = values.float().std().item() / math.sqrt(n) if n > 1 else 0.0
    return values.float().mean().item(), se


def retention_metrics(values: dict[str, float], start: dict[str, float]) -> dict[str, float]:
    """forget/<suite>/value and forget/<suite>/delta = value - its step-0 value."""
    out = {}
    for suite, value in values.items():
        out[f"forget/{suite}/value"] = value
        out[f"forget/{suite}/delta"] = value - start[suite]
    return out


def over_budget(kl: float, budget: float | None) -> bool:
    """True when a KL budget is set and the forward KL is past it."""
    return budget is not None and kl > budget


# ---------------------------------------------------------------------------------------------------------
# Model side


@dataclass
class Samples:
    """Fixed completions for a KL estimate."""

    tokens: Tensor
    """(N, T+1) prompt then completion, right-padded."""
    mask: Tensor
    """(N, T) True where tokens[:, t+1] is a completion token (the logp convention of types.py)."""


def pack(prompts: list[list[int]], groups: list[list[Completion]], pad_id: int) -> Samples:
    """Prompts and their sampled completions (n per prompt) -> right-padded Samples, prompt by prompt."""
    rows = [(p, c.token_ids) for p, group in zip(prompts, groups) for c in group]
    width = max(len(p) + len(c) for p, c in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (N, T+1)
    mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)  # (N, T)
    for i, (prompt, completion) in enumerate(rows):
        tokens[i, : len(prompt) + len(completion)] = torch.tensor(prompt + completion)
        mask[i, len(prompt) - 1 : len(prompt) - 1 + len(completion)] = True
    return Samples(tokens, mask)


@torch.no_grad()
def sequence_kls(
    policy: nn.Module, base: Any, samples: Samples, temperature: float, micro: int, forward: bool
) -> tuple[Tensor, Tensor]:
    """(N,) per-completion KL (chain rule) and (N,) summed log-ratio (k1) on fixed samples: KL(base || policy)
    when forward, else KL(policy || base). base() is a context manager that yields the base model."""
    chain, k1 = [], []
    for start in range(0, samples.tokens.shape[0], micro):
        mask = samples.mask[start : start + micro]  # (b, T)
        width = int(mask.any(0).nonzero().max()) + 2  # trim shared padding
        tokens, mask = samples.tokens[start : start + micro, :width], mask[:, : width - 1]  # (b, t+1), (b, t)
        logits_policy = policy(input_ids=tokens[:, :-1], use_cache=False).logits  # (b, t, V)
        with base() as model:
            logits_base = model(input_ids=tokens[:, :-1], use_cache=False).logits  # (b, t, V)
        p, q = (logits_base, logits_policy) if forward else (logits_policy, logits_base)
        token_kl, ratio = kl_terms(p, q, tokens[:, 1:], temperature)  # (b, t), (b, t)
        chain.append(sequence_sum(token_kl, mask))
        k1.append(sequence_sum(ratio, mask))
    return torch.cat(chain), torch.cat(k1)  # (N,), (N,)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    from reasonrl.tokenizer import ByteTokenizer

    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.encode(text)
    return list(tokenizer.encode(text, add_special_tokens=False))


def text_chunks(source: str, tokenizer: Any, length: int) -> Tensor:
    """forget.text -> (C, L) token chunks of the text (the tail shorter than L is left out)."""
    path = TEXT_FILE if source == "bundled" else Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"forget.text={source!r}: no such file; give a UTF-8 text file, 'bundled' or null")
    ids = encode_text(tokenizer, path.read_text(encoding="utf-8"))
    count = len(ids) // length
    if count == 0:
        raise ValueError(
            f"forget.text {str(path)!r} has {len(ids)} tokens, fewer than forget.text_tokens="
            f"{length}; lower forget.text_tokens or give more text"
        )
    return torch.tensor(ids[: count * length]).view(count, length)  # (C, L)


@torch.no_grad()
def text_loglik(model: nn.Module, chunks: Tensor, micro: int) -> float:
    """Mean log-likelihood (nats) per token of (C, L) chunks, each scored from its second token on."""
    from reasonrl.model import token_logprobs

    total = 0.0
    for start in range(0, chunks.shape[0], micro):
        total += token_logprobs(model, chunks[start : start + micro]).sum().item()  # (b, L-1) summed
    return total / (chunks.shape[0] * (chunks.shape[1] - 1))
