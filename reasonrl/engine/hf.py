"""HF engine: batched sampling with a KV cache straight from the (LoRA) policy, for CPUs and small runs.

Each prompt is prefilled once and its KV cache is repeated for its n samples; rows that hit a stop token
leave the batch, and decoding ends when every row is done or the token limit is reached. The KV cache
reserves room for the whole completion up front, so a decode step writes one position instead of copying
the cache (torch.cat was ~14% of decode time on CPU). The sampler's
log-probs are those of softmax(logits / temperature), the same distribution the trainer's
`token_logprobs(..., temperature)` computes, so on-policy importance ratios start at 1.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from reasonrl.config import EngineConfig, LoraConfig, ModelConfig
from reasonrl.engine import ENGINES, Completion, SamplingParams
from reasonrl.engine.prefix import PrefixStore, cached_prefill, row_kv
from reasonrl.tokenizer import stop_token_ids
from reasonrl.utils.faults import fault_point
from reasonrl.weights import WeightUpdate, active_lora, base_weights, lora_layers

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def sample_next(logits: Tensor, params: SamplingParams, generator: torch.Generator,
                blocked: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(B, V) logits -> sampled token (B,) and its log-prob (B,) under softmax(logits / T).

    top_p and blocked tokens restrict where samples come from, but the reported log-prob stays that of the
    full tempered distribution, which is what the trainer recomputes.
    """
    logits = logits.float()
    if params.temperature == 0:
        choice = logits if blocked is None else logits.index_fill(-1, blocked, float("-inf"))
        token = choice.argmax(-1)                                                # (B,)
        return token, logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
    scaled = logits if params.temperature == 1.0 else logits / params.temperature  # (B, V)
    lse = torch.logsumexp(scaled, dim=-1, keepdim=True)                          # (B, 1)
    probs = (scaled - lse).exp_()                                                # (B, V)
    if blocked is not None:
        probs.index_fill_(-1, blocked, 0.0)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)                        # (B, V)
        outside = sorted_p.cumsum(-1) - sorted_p > params.top_p                  # (B, V)
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    # Inverse-CDF sampling: one uniform per row (torch.multinomial draws one exponential per vocabulary entry,
    # which was 17% of decode time for a 49k vocabulary on CPU).
    cdf = probs.cumsum(-1)                                                       # (B, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator).to(cdf.device) * cdf[:, -1:]  # (B, 1)
    token = torch.searchsorted(cdf, u).squeeze(-1).clamp(max=cdf.shape[1] - 1)   # (B,)
    return token, (scaled.gather(-1, token[:, None]) - lse).squeeze(-1)


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
            if (type(child) is nn.Linear and child is not head and child.weight.dtype == torch.float32
                    and child.weight.device.type == "cpu"):
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
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)            # (P, L)
    attn = torch.zeros(len(prompts), width, dtype=torch.long)                    # (P, L)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        attn[i, width - len(p):] = 1
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
            self.k_buf[:, :, self.length:self.length + n] = key_states
            self.v_buf[:, :, self.length:self.length + n] = value_states
            self.length += n
            return self._views()

        def _resized(self, buf: Tensor) -> Tensor:
            out = buf.new_empty(*buf.shape[:2], self.capacity, buf.shape[-1])
            out[:, :, :self.length] = buf[:, :, :self.length]
            return out

        def _views(self) -> tuple[Tensor, Tensor]:
            self.keys, self.values = self.k_buf[:, :, :self.length], self.v_buf[:, :, :self.length]
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


class HFEngine:
    """Samples with a KV cache from a transformers model. With a LoRA model and engine.hf.merge_lora it decodes from its
    own copy with the adapter folded into the weights (W0 + scale * B A), rewritten by every update_weights:
    about 25% faster decoding on CPU than running the LoRA branches every token, for one more copy of the
    base weights. Without merging it samples from the model it was given, loading each update's adapter into it.

    HFEngine(model, ...) keeps references to `model`'s frozen base weights (W0) and nothing else of it: a local
    rollout worker shares them with the learner's policy (one copy of W0 in the process); the `hf` registry entry
    builds the engine on a model of its own (another process, or a test of the sync)."""

    def __init__(self, model: nn.Module, tokenizer: Any, cfg: EngineConfig) -> None:
        self.progress: Callable[[int, int], None] | None = None
        """Called with (prompts done, prompts) after each chunk a generate call samples (evaluate's progress)."""
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = sorted(stop_token_ids(tokenizer))
        self.batch_size = cfg.batch_size
        self.merge = cfg.hf.merge_lora and hasattr(model, "merge_and_unload")
        self.base = base_weights(model) if self.merge else {}   # W0 by layer (references, not copies)
        self.model = merged_copy(model) if self.merge else model
        self.cache_arg = cache_argument(self.model)
        self.device = next(self.model.parameters()).device
        self.prefixes = PrefixStore() if cfg.hf.prefix_cache else None
        self.version: int | None = None
        """The policy version this engine serves (None until the first update_weights)."""

    @torch.no_grad()
    def update_weights(self, update: WeightUpdate) -> None:
        """Serve the policy of this WeightUpdate: fold each LoRA delta into the merged copy (W0 + scale * B A),
        or load the adapter / the full tensors into the model."""
        if self.prefixes is not None:
            self.prefixes.clear()   # KV computed with the old weights
        if update.lora and self.merge:
            targets = dict(self.model.named_modules())
            for name, lora in update.lora.items():
                w0 = self.base[name]
                weight = w0 + lora.delta().to(w0.device).to(w0.dtype)
                target = targets[name]
                if isinstance(target, TransposedLinear):
                    target.load(weight)
                else:
                    target.weight.copy_(weight)
        elif update.lora:
            layers = lora_layers(self.model)
            for name, lora in update.lora.items():
                _, a, b = active_lora(layers[name])
                for param, value in ((a, lora.a), (b, lora.b)):
                    if param.data_ptr() != value.data_ptr():
                        param.copy_(value)
        else:
            load_named(self.model, update.full)
        self.version = update.version

    def sleep(self) -> None:
        """Nothing to release: the hf engine shares the learner's process and device memory as it is."""

    def wake(self) -> None:
        """See sleep()."""

    def close(self) -> None:
        self.prefixes = PrefixStore() if self.prefixes is not None else None

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int,
                 keep: bool = False, adapter: bool = True) -> list[list[Completion]]:
        """keep: store each row's KV so that a later call whose prompt extends prompt + completion prefills
        only the new tokens (multi-turn episodes; engine.hf.prefix_cache). adapter=False samples the base
        model (LoRA only), bypassing stored prefixes."""
        if not adapter:
            with self.adapter_off():
                return self._generate(prompts, params, n, seed, [(0, None)] * len(prompts), False)
        hits = self.prefixes.take(prompts) if self.prefixes is not None else [(0, None)] * len(prompts)
        return self._generate(prompts, params, n, seed, hits, keep and self.prefixes is not None)

    def _generate(self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, hits: list,
                  keep: bool) -> list[list[Completion]]:
        generator = torch.Generator().manual_seed(seed)
        per_chunk = max(1, self.batch_size // n)
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), per_chunk):
            chunk = slice(start, start + per_chunk)
            chunk_hits, hits[chunk] = hits[chunk], [(0, None)] * len(hits[chunk])  # freed once prefilled
            out.extend(self._generate_chunk(prompts[chunk], params, n, generator, chunk_hits, keep))
            if self.progress is not None:
                self.progress(len(out), len(prompts))
        return out

    @contextlib.contextmanager
    def adapter_off(self) -> Iterator[None]:
        """Serve the base weights W0 for a while: the merged copy gets W0 and its own weights back after; a LoRA
        model runs with its adapter disabled."""
        if self.merge:
            layers = dict(self.model.named_modules())
            saved = {name: layer.weight_t.clone() if isinstance(layer, TransposedLinear) else layer.weight.clone()
                     for name, layer in ((name, layers[name]) for name in self.base)}
            try:
                for name, w0 in self.base.items():
                    layer = layers[name]
                    layer.load(w0) if isinstance(layer, TransposedLinear) else layer.weight.copy_(w0)
                yield
            finally:
                for name, value in saved.items():
                    layer = layers[name]
                    (layer.weight_t if isinstance(layer, TransposedLinear) else layer.weight).copy_(value)
        elif hasattr(self.model, "disable_adapter"):
            with cast("PeftModel", self.model).disable_adapter():
                yield
        else:
            raise ValueError("generate(adapter=False) needs a LoRA policy: with full fine-tuning the engine "
                             "holds only the trained weights")

    def _prefill(self, prompts: list[list[int]], hits: list, capacity: int) -> tuple[Tensor, Tensor, Any]:
        """Last-position logits (P, V), attention mask (P, L) and the filled cache, reusing stored prefixes."""
        ids, attn, reused = cached_prefill(prompts, hits, self.pad_id, left_pad)  # (P, W), (P, A+W)
        ids, attn = ids.to(self.device), attn.to(self.device)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)[:, attn.shape[1] - ids.shape[1]:]  # (P, W)
        cache = reserved_cache(capacity)
        for layer, (keys, values) in enumerate(reused):
            cache.update(keys.to(self.device), values.to(self.device), layer)
        hits.clear()  # the stored entries are in the cache now: let them go
        logits = self.model(input_ids=ids, attention_mask=attn, position_ids=positions,
                            use_cache=True, logits_to_keep=last_position(ids),
                            **{self.cache_arg: cache}).logits[:, -1]                # (P, V)
        return logits, attn, cache

    def _generate_chunk(self, prompts: list[list[int]], params: SamplingParams, n: int,
                        generator: torch.Generator, hits: list, keep: bool) -> list[list[Completion]]:
        logits, attn, cache = self._prefill(prompts, hits, max(map(len, prompts)) + params.max_new_tokens)
        if n > 1:  # one prefill per prompt, shared by its n samples
            cache.batch_repeat_interleave(n)
            logits, attn = logits.repeat_interleave(n, 0), attn.repeat_interleave(n, 0)  # (B, V), (B, L)
        rows = len(prompts) * n
        next_pos = attn.sum(-1)                                                  # (B,)
        active = torch.arange(rows, device=self.device)                          # batch row -> output row
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        finished = [False] * rows
        stop = torch.tensor(self.stop_ids, device=self.device)
        for step in range(params.max_new_tokens):
            fault_point("generate")
            blocked = stop if step < params.min_new_tokens else None
            token, logp = sample_next(logits, params, generator, blocked)        # (b,), (b,)
            for row, t, lp in zip(active.tolist(), token.tolist(), logp.tolist()):
                tokens[row].append(t)
                logps[row].append(lp)
            done = torch.isin(token, stop)                                        # (b,)
            for row in active[done].tolist():
                finished[row] = True
            if step == params.max_new_tokens - 1 or bool(done.all()):
                break
            if bool(done.any()):  # drop finished rows from the cache and the batch
                if keep:
                    self._store(prompts, n, tokens, cache, attn, active, done.nonzero().squeeze(-1).tolist())
                stay = (~done).nonzero().squeeze(-1)
                cache.batch_select_indices(stay)
                active, token, attn, next_pos = active[stay], token[stay], attn[stay], next_pos[stay]
            attn = torch.cat([attn, attn.new_ones(len(active), 1)], dim=1)         # (b, L+s)
            logits = self.model(input_ids=token[:, None], attention_mask=attn, position_ids=next_pos[:, None],
                                use_cache=True, **{self.cache_arg: cache}).logits[:, -1]       # (b, V)
            next_pos = next_pos + 1
        if keep:
            self._store(prompts, n, tokens, cache, attn, active, list(range(len(active))))
        completions = [Completion(tokens[r], logps[r], finished[r]) for r in range(rows)]
        return [completions[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _store(self, prompts: list[list[int]], n: int, tokens: list[list[int]], cache: Any, attn: Tensor,
               active: Tensor, batch_rows: list[int]) -> None:
        """Keep the KV of these batch rows: their prompt and every sampled token but the last (never fed)."""
        assert self.prefixes is not None
        for b in batch_rows:
            row = int(active[b])
            self.prefixes.put(prompts[row // n] + tokens[row][:-1], row_kv(cache, b, attn[b]))


@ENGINES.register("hf")
def hf_engine(model_cfg: ModelConfig, lora_cfg: LoraConfig, engine_cfg: EngineConfig, tokenizer: Any,
              shared: nn.Module | None = None) -> HFEngine:
    """The `hf` engine from config. `shared`: the learner's policy in this process (local placement), whose
    frozen base weights the engine reads instead of loading its own; without it the engine loads its own copy
    of the model (as a rollout worker in another process does). Either way its weights come only through
    update_weights."""
    if shared is not None:
        return HFEngine(shared, tokenizer, engine_cfg)
    from reasonrl.model import load_policy
    with torch.random.fork_rng(devices=[]):  # building a tiny model seeds torch: leave the caller's stream alone
        model, _ = load_policy(model_cfg, lora_cfg)
    model.requires_grad_(False)
    return HFEngine(model, tokenizer, engine_cfg)
