"""SFT data: demonstrations (prompt messages, completion text) -> token rows with a loss mask, packed or not.

    demos = load_demos(cfg, task)                  # sft.data file, or the task's reference solutions
    seq = encode_demo(tokenizer, demo)             # chat-templated prompt (mask False) + completion + stop (True)
    rows = pack_rows([len(s.tokens) for s in seqs], seq_len, pack=True, order=...)   # example indices per row
    batch = collate_rows([[seqs[i] for i in row] for row in rows], pad_id)          # tensors for one forward

A packed row holds several demonstrations back to back. Each one attends only to itself (a block-diagonal
causal mask (B, 1, T, T)) and its positions restart at 0, so every token sees exactly the context it
would see alone: the packed loss equals the unpacked one (tests/unit/test_sft.py checks this).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrl.config import RunConfig
from reasonrl.tasks import ANSWER_INSTRUCTION, Task, prompt_key, shot_reply
from reasonrl.tasks.files import file_prompt, read_csv, read_json, read_jsonl
from reasonrl.tokenizer import ByteTokenizer, encode_chat, render, stop_token_ids
from reasonrl.types import Message

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Demo:
    """One demonstration: the prompt messages and the reply to train on."""

    prompt: list[Message]
    completion: str
    source: str
    """Where it came from, for error messages: 'demos.jsonl:12' or an example id."""


@dataclass(frozen=True)
class Sequence:
    """A tokenised demonstration: tokens[i] is trained on (predicted) when mask[i] is True."""

    tokens: list[int]
    mask: list[bool]
    source: str


READERS = {".jsonl": read_jsonl, ".json": read_json, ".csv": read_csv}


def read_demos(cfg: RunConfig) -> list[Demo]:
    """Demonstrations from cfg.sft.data. Prompts are built as the task builds them from a file (chat
    template input: system prompt, question + task.instruction), so SFT sees the prompts eval uses."""
    path = Path(cfg.sft.data or "").expanduser()
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"sft.data {cfg.sft.data!r}: unknown file type {path.suffix!r}; use .jsonl, .json or .csv")
    if not path.is_file():
        raise ValueError(f"sft.data {cfg.sft.data!r} is not a file (resolved to {str(path.resolve())!r})")
    task_cfg = dataclasses.replace(cfg.task, prompt_field=cfg.sft.prompt_field)
    demos = []
    for where, record in reader(path):
        check_demo_record(where, record, cfg)
        prompt = file_prompt(record[cfg.sft.prompt_field], task_cfg, where, ANSWER_INSTRUCTION)
        demos.append(Demo(prompt=prompt, completion=record[cfg.sft.completion_field], source=where))
    if not demos:
        raise ValueError(f"sft.data {cfg.sft.data!r} holds no demonstrations")
    return demos


def check_demo_record(where: str, record: Any, cfg: RunConfig) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object (a record with fields), got {type(record).__name__}")
    fields = ", ".join(record)
    for key, name in ((cfg.sft.prompt_field, "prompt_field"), (cfg.sft.completion_field, "completion_field")):
        if key not in record:
            raise ValueError(f"{where}: missing field {key!r} (fields: {fields}); set sft.{name}")
    completion = record[cfg.sft.completion_field]
    if not isinstance(completion, str) or not completion.strip():
        raise ValueError(
            f"{where}: field {cfg.sft.completion_field!r} must be a non-empty string, got {str(completion)[:80]!r}"
        )


def load_demos(cfg: RunConfig, task: Task) -> list[Demo]:
    """sft.data's demonstrations, or the reference reply (tasks.shot_reply) of every train example that has
    one. Raises when a demonstration's prompt is a held-out eval problem."""
    if cfg.sft.data:
        demos = read_demos(cfg)
    else:
        demos = [
            Demo(prompt=e.prompt, completion=reply, source=e.id)
            for e in task.train
            if (reply := shot_reply(e)) is not None
        ]
        if not demos:
            raise ValueError(
                f"task {task.name!r} has no reference solutions or answers in train; give "
                "demonstrations with sft.data=<file>"
            )
    held_out = {prompt_key(e.prompt) for e in task.eval}
    leaked = [d.source for d in demos if prompt_key(d.prompt) in held_out]
    if leaked:
        raise ValueError(
            f"{len(leaked)} demonstrations are held-out eval problems of task {task.name!r} (first: "
            f"{leaked[0]}); remove them or change task.seed / task.eval_size"
        )
    return demos


def end_of_turn_id(tokenizer: Any) -> int:
    """The stop token the chat template writes after an assistant reply (what the policy samples to stop)."""
    stops = sorted(stop_token_ids(tokenizer))
    if not stops:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no EOS or end-of-turn token to train on")
    if not isinstance(tokenizer, ByteTokenizer):
        mark = "zqxj-reply"
        text = render(tokenizer, [{"role": "user", "content": "q"}, {"role": "assistant", "content": mark}], False)
        tail = text[text.rindex(mark) + len(mark) :]
        for token_id in stops:
            if tail.startswith(tokenizer.convert_ids_to_tokens(token_id)):
                return token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id in stops else stops[0]


def encode_demo(tokenizer: Any, demo: Demo, stop_id: int) -> Sequence:
    """Chat-templated prompt (mask False), then the completion's tokens and the stop token (mask True): the
    same layout rollout builds from sampled tokens."""
    prompt = encode_chat(tokenizer, demo.prompt)
    if isinstance(tokenizer, ByteTokenizer):
        completion = tokenizer.encode(demo.completion)
    else:
        completion = list(tokenizer.encode(demo.completion, add_special_tokens=False))
    tokens = prompt + completion + [stop_id]
    return Sequence(tokens=tokens, mask=[False] * len(prompt) + [True] * (len(completion) + 1), source=demo.source)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(seed * 7919 + epoch).shuffle(order)
    return order


def pack_rows(lengths: list[int], seq_len: int, pack: bool, order: list[int]) -> list[list[int]]:
    """Indices of the sequences in each row, in `order`. Packing is greedy and keeps the order: a sequence
    joins the current row when it fits in seq_len, else starts the next row. Without packing, one per row."""
    rows: list[list[int]] = []
    used = seq_len
    for i in order:
        if lengths[i] > seq_len:
            raise ValueError(f"a demonstration has {lengths[i]} tokens > sft.seq_len={seq_len}; raise sft.seq_len")
        if pack and used + lengths[i] <= seq_len:
            rows[-1].append(i)
            used += lengths[i]
        else:
            rows.append([i])
            used = lengths[i]
    return rows


@dataclass
class RowBatch:
    """Rows for one forward pass: tokens (B, T+1); mask, position_ids (B, T); allowed (B, T, T) bool, True where
    query position i may attend key position j (same sequence, j <= i)."""

    tokens: Tensor
    mask: Tensor
    position_ids: Tensor
    allowed: Tensor

    def attention_mask(self, dtype: torch.dtype) -> Tensor:
        """The additive (B, 1, T, T) mask transformers takes as a custom 4D mask: 0 where allowed, the dtype's
        minimum elsewhere (additive works with both eager and sdpa attention)."""
        import torch

        return torch.zeros(self.allowed.shape, dtype=dtype).masked_fill(~self.allowed, torch.finfo(dtype).min)[:, None]


def collate_rows(rows: list[list[Sequence]], pad_id: int) -> RowBatch:
    """Concatenate each row's sequences and right-pad to the longest row. Position t of mask / logp predicts
    token t+1; it is trained when that token is a completion token of the same sequence."""
    import torch

    width = max(sum(len(s.tokens) for s in row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T+1)
    trained = torch.zeros(len(rows), width, dtype=torch.bool)  # (B, T+1)
    segment = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T+1) 0 = padding
    positions = torch.zeros(len(rows), width, dtype=torch.long)  # (B, T+1)
    for r, row in enumerate(rows):
        start = 0
        for k, seq in enumerate(row, start=1):
            end = start + len(seq.tokens)
            tokens[r, start:end] = torch.tensor(seq.tokens)
            trained[r, start:end] = torch.tensor(seq.mask)
            segment[r, start:end] = k
            positions[r, start:end] = torch.arange(len(seq.tokens))
            start = end
        positions[r, start:] = torch.arange(width - start)  # padding: its own causal block
    assert not bool((trained & (positions == 0)).any()), "a sequence must start with a prompt token"
    seg = segment[:, :-1]  # (B, T)
    causal = torch.ones(width - 1, width - 1, dtype=torch.bool).tril()  # (T, T)
    allowed = (seg[:, :, None] == seg[:, None, :]) & causal  # (B, T, T)
    return RowBatch(tokens=tokens, mask=trained[:, 1:], position_ids=positions[:, :-1], allowed=allowed)
