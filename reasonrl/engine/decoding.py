"""Decoding parts of the HF engine: sampling the next token, left padding, a KV cache with room reserved for the
whole completion, and the merged (W0 + scale * B A) copy of a LoRA policy that the engine decodes from."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from reasonrl.engine import SamplingParams

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def sample_next(
    logits: Tensor,
    params: SamplingParams,
    generator: torch.Generator | None,
    blocked: Tensor | None = None,
    uniforms: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(B, V) logits -> sampled token (B,) and its log-prob (B,) under softmax(logits / T).

    The row's uniform draw comes from `uniforms` (B, 1) when given (one stream per row: RowStreams), else from
    `generator`. top_p and blocked tokens restrict where samples come from, but the reported log-prob stays that
    of the full tempered distribution, which is what the trainer recomputes.
    """
    logits = logits.float()
    if params.temperature == 0:
        choice = logits if blocked is None else logits.index_fill(-1, blocked, float("-inf"))
        token = choice.argmax(-1)  # (B,)
        return token, logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
    scaled = logits if params.temperature == 1.0 else logits / params.temperature  # (B, V)
    lse = torch.logsumexp(scaled, dim=-1, keepdim=True)  # (B, 1)
    probs = (scaled - lse).exp_()  # (B, V)
    if blocked is not None:
        probs.index_fill_(-1, blocked, 0.0)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)  # (B, V)
        outside = sorted_p.cumsum(-1) - sorted_p > params.top_p  # (B, V)
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    # Inverse-CDF sampling: one uniform per row (torch.multinomial draws one exponential per vocabulary entry,
    # which was 17% of decode time for a 49k vocabulary on CPU).
    cdf = probs.cumsum(-1)  # (B, V)
    if uniforms is None:
        uniforms = torch.rand(cdf.shape[0], 1, generator=generator)
    u = uniforms.to(cdf.device) * cdf[:, -1:]  # (B, 1)
    token = torch.searchsorted(cdf, u).squeeze(-1).clamp(max=cdf.shape[1] - 1)  # (B,)
    return token, (scaled.gather(-1, token[:, None]) - lse).squeeze(-1)


class RowStreams:
    """One random stream per sampled row, seeded from its prompt's seed and its sample index, so that what a row
    samples does not depend on which other prompts share its batch: a step split over several rollout workers
    samples exactly what one worker would (the per-prompt seeds of engine.generate)."""

    def __init__(self, seeds: Sequence[int], n: int) -> None:
        self.generators = [
            torch.Generator().manual_seed((seed * 1_000_003 + j) % (1 << 63)) for seed in seeds for j in range(n)
        ]

    def draw(self, rows: list[int]) -> Tensor:
        """(len(rows), 1) uniforms, one from each listed row's stream."""
        return torch.cat([torch.rand(1, 1, generator=self.generators[r]) for r in rows])


def cache_argument(model: nn.Module) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); use whichever this version's forward takes."""
    base = cast("PeftModel", model).get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class TransposedLinear(nn.Module):
    """y = x @ W^T + b with W^T stored contiguous. On CPU, fp32 GEMMs with few rows (decoding) ran 2.4x faster
    from this layout than from nn.Linear's (16 rows, SmolLM2's layer shapes, 2 threads; equal at 1024 rows, and
    no gain in bf16), so the engine's fp32 merged copy uses it."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias

    @torch.no_grad()
    def load(self, weight: Tensor) -> None:
        """Take an (out, in) weight as nn.Linear holds it. Copied as 32 x 32 tiles (a 4-D view): the plain
        transposed copy_ took 350 ms per sync of SmolLM2's 210 layers, the tiled one 130 ms (same values)."""
        out_f, in_f = weight.shape
        bo, bi = (32 if out_f % 32 == 0 else out_f), (32 if in_f % 32 == 0 else in_f)
        tiles = weight.reshape(out_f // bo, bo, in_f // bi, bi).permute(2, 3, 0, 1)  # [I, i, O, o] = W[O o, I i]
        self.weight_t.view(in_f // bi, bi, out_f // bo, bo).copy_(tiles)


def transpose_linears(model: nn.Module) -> nn.Module:
    """Swap the decoder's fp32 nn.Linear layers on CPU for TransposedLinear (the output embedding stays: it may
    be tied to the input embedding, and its GEMM was as fast either way)."""
    head = cast("PreTrainedModel", model).get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                type(child) is nn.Linear
                and child is not head
                and child.weight.dtype == torch.float32
                and child.weight.device.type == "cpu"
            ):
                setattr(parent, name, TransposedLinear(child))
    return model


def merged_copy(policy: nn.Module) -> nn.Module:
    """A plain model equal to the LoRA policy with its adapters merged in; the policy itself is untouched."""
    import copy

    merged = cast("PeftModel", copy.deepcopy(policy)).merge_and_unload()
    merged.requires_grad_(False)
    return transpose_linears(merged.eval())


@torch.no_grad()
def load_named(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    """Copy named full tensors into a model (a TransposedLinear takes its weight as nn.Linear names it)."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    for name, value in tensors.items():
        owner = modules.get(name.rpartition(".")[0])
        if isinstance(owner, TransposedLinear) and name.endswith(".weight"):
            owner.load(value)
        elif name not in params:
            raise KeyError(f"weight update names {name!r}, which the engine's model does not have")
        elif params[name].data_ptr() != value.data_ptr():
            params[name].copy_(value)


def last_position(ids: Tensor) -> Tensor:
    """logits_to_keep for the last position only, as an index tensor: transformers then gathers a contiguous
    (B, 1, H) hidden state. The int form (logits_to_keep=1) slices a non-contiguous view, and a bf16 linear on
    that view took a per-row copy of the output embedding on CPU (64 rows: 4.9 s and 3.7 GB instead of 9 ms)."""
    return torch.tensor([ids.shape[1] - 1], device=ids.device)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-pad prompts -> ids (P, L) and attention mask (P, L)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (P, L)
    attn = torch.zeros(len(prompts), width, dtype=torch.long)  # (P, L)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    return ids, attn


def reserved_cache(capacity: int) -> Any:
    """A transformers Cache whose layers write into buffers with room for `capacity` positions."""
    from functools import partial

    from transformers.cache_utils import Cache, DynamicLayer

    class ReservedLayer(DynamicLayer):
        """DynamicLayer semantics (keys/values are the filled positions), without re-concatenating per step."""

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity, self.length = capacity, 0

        def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self.k_buf = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[-1])
                self.v_buf = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[-1])
            n = key_states.shape[-2]
            if self.length + n > self.capacity:  # out of room: grow (not expected within one generate call)
                self.capacity = 2 * (self.length + n)
                self.k_buf = self._resized(self.k_buf)
                self.v_buf = self._resized(self.v_buf)
            self.k_buf[:, :, self.length : self.length + n] = key_states
            self.v_buf[:, :, self.length : self.length + n] = value_states
            self.length += n
            return self._views()

        def _resized(self, buf: Tensor) -> Tensor:
            out = buf.new_empty(*buf.shape[:2], self.capacity, buf.shape[-1])
            out[:, :, : self.length] = buf[:, :, : self.length]
            return out

        def _views(self) -> tuple[Tensor, Tensor]:
            self.keys, self.values = self.k_buf[:, :, : self.length], self.v_buf[:, :, : self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.length:
                self.k_buf = self.k_buf.repeat_interleave(repeats, dim=0)
                self.v_buf = self.v_buf.repeat_interleave(repeats, dim=0)
                self._views()

        def batch_select_indices(self, indices: Tensor) -> None:
            if self.length:
                self.k_buf, self.v_buf = self.k_buf[indices], self.v_buf[indices]
                self._views()

    # transformers types it as a class, but only ever calls it with no arguments, which a partial does too
    return Cache(layer_class_to_replicate=partial(ReservedLayer, capacity))  # type: ignore[arg-type]
