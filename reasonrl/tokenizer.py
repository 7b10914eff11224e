"""Tokenizer helpers: chat-template encoding for any HF tokenizer, and a byte-level stub for tiny test models."""
from __future__ import annotations

from typing import Any

from reasonrl.types import Message


def encode_chat(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Token ids of a conversation with the generation prompt appended (the policy's turn comes next)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return list(ids)


def stop_token_ids(tokenizer: Any) -> set[int]:
    """Tokens that end the policy's turn: EOS plus the chat template's end-of-turn marker, if any."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tokenizer.convert_tokens_to_ids(marker) if hasattr(tokenizer, "convert_tokens_to_ids") else None
        if isinstance(tid, int) and tid >= 0 and tid != getattr(tokenizer, "unk_token_id", None):
            ids.add(tid)
    return ids


class ByteTokenizer:
    """Characters 32..126 plus newline, and pad/bos/eos: enough for tiny-model tests, no files needed."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    offset = 3
    chars = "\n" + "".join(chr(c) for c in range(32, 127))
    vocab_size = offset + len(chars)
    eos_token = "<eos>"
    pad_token = "<pad>"

    def encode(self, text: str) -> list[int]:
        return [self.offset + self.chars.index(c) for c in text if c in self.chars]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.chars[i - self.offset] for i in ids if i >= self.offset)

    def apply_chat_template(self, messages: list[Message], add_generation_prompt: bool = True,
                            tokenize: bool = True) -> list[int] | str:
        text = "".join(f"{m['role'][0]}:{m['content']}\n" for m in messages) + ("a:" if add_generation_prompt else "")
        return [self.bos_token_id] + self.encode(text) if tokenize else text

    def convert_tokens_to_ids(self, token: str) -> int:
        return -1
