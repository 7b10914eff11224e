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


_MARK = "zqxj-end-of-action"


def render(tokenizer: Any, messages: list[Message], add_generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    return text if isinstance(text, str) else str(text)


def observation_tokens(tokenizer: Any, messages: list[Message]) -> list[int]:
    """The tokens that follow a finished policy turn (which ends with its sampled stop token) when the
    environment answers with `messages` and the policy speaks next: the template's text after the end-of-turn
    marker, the messages, and the generation prompt. Encoded on their own, so sampled tokens are never
    re-tokenised (token in, token out)."""
    base: list[Message] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}]
    before = render(tokenizer, base, add_generation_prompt=False)
    after = render(tokenizer, base + list(messages), add_generation_prompt=True)
    if not after.startswith(before):
        raise ValueError(
            f"the chat template of {type(tokenizer).__name__} rewrites earlier turns when a message "
            "is appended, so multi-turn token-in/token-out rollouts cannot use it"
        )
    tail = assistant_tail(tokenizer)
    for marker in stop_texts(tokenizer):
        if tail.startswith(marker):
            tail = tail[len(marker) :]
            break
    text = tail + after[len(before) :]
    if isinstance(tokenizer, ByteTokenizer):
        return tokenizer.encode(text)
    return list(tokenizer.encode(text, add_special_tokens=False))


def assistant_tail(tokenizer: Any) -> str:
    """What the chat template writes after an assistant message's text (e.g. '<|im_end|>\\n')."""
    base: list[Message] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _MARK}]
    before = render(tokenizer, base, add_generation_prompt=False)
    return before[before.rindex(_MARK) + len(_MARK) :]


def turn_end_token(tokenizer: Any) -> int:
    """The stop token the chat template ends an assistant turn with (<end_of_turn> for Gemma, whose EOS is
    <eos>): what closes a turn cut at the token limit. The smallest stop id when the template names none."""
    ids = sorted(stop_token_ids(tokenizer))
    if not isinstance(tokenizer, ByteTokenizer):
        tail = assistant_tail(tokenizer)
        for i in ids:
            text = tokenizer.convert_ids_to_tokens(i)
            if text and tail.startswith(text):
                return i
    return ids[0]


def stop_texts(tokenizer: Any) -> list[str]:
    """The text of each stop token (what a template writes where the policy's sampled stop token stands)."""
    if isinstance(tokenizer, ByteTokenizer):
        return []
    return [t for t in (tokenizer.convert_ids_to_tokens(i) for i in sorted(stop_token_ids(tokenizer))) if t]


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

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.offset + self.chars.index(c) for c in text if c in self.chars]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        # ids past the alphabet (a model with a larger vocabulary, as bench/plan_grid.py's) read as U+FFFD
        return "".join(
            self.chars[i - self.offset] if i < self.vocab_size else "\ufffd" for i in ids if i >= self.offset
        )

    def apply_chat_template(
        self, messages: list[Message], add_generation_prompt: bool = True, tokenize: bool = True
    ) -> list[int] | str:
        text = "".join(f"{m['role'][0]}:{m['content']}\n" for m in messages) + ("a:" if add_generation_prompt else "")
        return [self.bos_token_id] + self.encode(text) if tokenize else text

    def convert_tokens_to_ids(self, token: str) -> int:
        return -1
