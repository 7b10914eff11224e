"""Prefix reuse across generate calls: the KV of each finished row, keyed by its tokens, for a later prompt
that extends it.

A multi-turn episode's next prompt is its previous prompt + the sampled reply + the environment's reply, so
without reuse every turn prefills the whole conversation again (quadratic in the number of turns). With it, a
turn prefills only what is new. Entries live for one call: a call takes the entries its prompts extend and
drops the rest, and stores its own rows only when asked to (keep); new weights make every entry stale, so the
engine clears the store in update_weights.

Layout of a prefill that reuses prefixes (one row per prompt, left-padded as usual): with W the longest new
part of any prompt, row p feeds its last min(len(p), W) tokens and takes the positions before them from its
entry; a row whose new part is shorter than W re-feeds a few cached tokens, which keeps every row contiguous
(no holes in the attention mask).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

LayerKV = list[tuple[Tensor, Tensor]]
"""Per layer (keys, values), each (heads, length, head_dim)."""


class PrefixStore:
    def __init__(self) -> None:
        self.entries: dict[tuple[int, ...], LayerKV] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries = {}

    def put(self, tokens: list[int], kv: LayerKV) -> None:
        self.entries[tuple(tokens)] = kv

    def take(self, prompts: list[list[int]]) -> list[tuple[int, LayerKV | None]]:
        """For each prompt, (number of its leading tokens whose KV is stored, that KV), longest stored prefix
        first and always leaving at least one token to feed; (0, None) without one. Empties the store."""
        hits: list[tuple[int, LayerKV | None]] = []
        for prompt in prompts:
            best: tuple[int, LayerKV | None] = (0, None)
            for key, kv in self.entries.items():
                if best[0] < len(key) < len(prompt) and tuple(prompt[: len(key)]) == key:
                    best = (len(key), kv)
            hits.append(best)
        self.clear()
        return hits


def reuse_layout(prompts: list[list[int]], cached: list[int]) -> tuple[list[int], int]:
    """Given how many leading tokens of each prompt are cached: how many cached positions each row takes from
    its entry, and the width W of the fed window (the longest uncached part)."""
    window = max(len(p) - c for p, c in zip(prompts, cached))
    return [max(0, len(p) - window) for p in prompts], window


def cached_prefill(
    prompts: list[list[int]], hits: list[tuple[int, LayerKV | None]], pad_id: int, left_pad: Any
) -> tuple[Tensor, Tensor, Iterator[tuple[Tensor, Tensor]]]:
    """ids (P, W) to feed, attention mask (P, A + W), and an iterator over the layers' (keys, values)
    (P, heads, A, head_dim) to put in the cache first, where A is the most cached positions any row reuses
    (empty when A = 0). The iterator builds one layer at a time, so only one padded layer exists at once."""
    reuse, _ = reuse_layout(prompts, [c for c, _ in hits])
    ids, attn_new = left_pad([p[r:] for p, r in zip(prompts, reuse)], pad_id)  # (P, W), (P, W)
    width = max(reuse)
    attn_old = torch.zeros(len(prompts), width, dtype=attn_new.dtype)  # (P, A)
    for row, r in enumerate(reuse):
        attn_old[row, width - r :] = 1

    def layers() -> Iterator[tuple[Tensor, Tensor]]:
        if width == 0:
            return
        sample = next(kv for _, kv in hits if kv is not None)
        for layer, (k0, v0) in enumerate(sample):
            keys = k0.new_zeros(len(prompts), k0.shape[0], width, k0.shape[-1])  # (P, heads, A, head_dim)
            values = v0.new_zeros(len(prompts), v0.shape[0], width, v0.shape[-1])
            for row, ((_, kv), r) in enumerate(zip(hits, reuse)):
                if r:
                    assert kv is not None
                    keys[row, :, width - r :] = kv[layer][0][:, :r]
                    values[row, :, width - r :] = kv[layer][1][:, :r]
            yield keys, values

    return ids, torch.cat([attn_old, attn_new], dim=1), layers()


def row_kv(cache: Any, row: int, attn_row: Tensor) -> LayerKV:
    """The KV of one batch row at its attended positions (a copy that outlives the cache)."""
    index = attn_row.nonzero().squeeze(-1)
    return [(layer.keys[row][:, index], layer.values[row][:, index]) for layer in cache.layers]
