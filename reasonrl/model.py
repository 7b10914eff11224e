"""Models: load a policy (bundled SmolLM2, any local HF causal LM, or a tiny random model), apply LoRA,
compute token log-probs. Model files (the cache, the bundled model's conversion, tiny models) are in model_files.py.

The reference policy for the KL term is the same model with its LoRA adapter disabled (no second copy).
`token_logprobs` is the only place that turns logits into per-token log-probs:
    logp[:, t] = log_softmax(logits[:, t] / temperature)[tokens[:, t+1]]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from reasonrl.config import LoraConfig, ModelConfig
from reasonrl.fused_lora import fuse_lora_layers
from reasonrl.model_files import BYTE_TOKENIZER_FILE, bundled_model_dir, tiny_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel

BUNDLED = "bundled:smollm2-135m-instruct"
TINY = "tiny:llama"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_WARNED: set[str] = set()


def torch_dtype(cfg: ModelConfig) -> torch.dtype:
    """model.dtype as a torch dtype (auto resolved for model.device, as the config loader does)."""
    from reasonrl.config.dtype import auto_dtype, slow_bf16_warning

    name = auto_dtype(cfg.device) if cfg.dtype == "auto" else cfg.dtype
    if (warning := slow_bf16_warning(name, cfg.device)) is not None and cfg.path != TINY and warning not in _WARNED:
        _WARNED.add(warning)
        print(warning, file=sys.stderr, flush=True)
    return DTYPES[name]


def model_dir(cfg: ModelConfig) -> Path:
    """The local Hugging Face directory of model.path (the bundled model's cached conversion included)."""
    path = bundled_model_dir() if cfg.path == BUNDLED else Path(cfg.path).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model.path {cfg.path!r}: no config.json in {path}; give a local Hugging Face "
            f"model directory, or {BUNDLED!r}"
        )
    return path


def load_base(cfg: ModelConfig) -> tuple[nn.Module, object]:
    """Return (model, tokenizer) with frozen-dtype base weights, in eval mode."""
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(cfg)
    if cfg.path == TINY:
        from reasonrl.tokenizer import ByteTokenizer

        return tiny_model(vocab_size=ByteTokenizer.vocab_size).to(dtype), ByteTokenizer()
    model = AutoModelForCausalLM.from_pretrained(model_dir(cfg), dtype=dtype)
    tokenizer = load_tokenizer(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The model's tokenizer alone (a controller that holds no weights needs only this)."""
    from transformers import AutoTokenizer

    from reasonrl.tokenizer import ByteTokenizer

    if cfg.path == TINY or (model_dir(cfg) / BYTE_TOKENIZER_FILE).is_file():  # tiny (e.g. `reasonrl pipeline`)
        return ByteTokenizer()
    tokenizer = AutoTokenizer.from_pretrained(model_dir(cfg))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_device(name: str) -> torch.device:
    """model.device -> a torch device; a clear error when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device={name}: this torch build sees no CUDA device; use model.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"model.device={name!r} is not a device; use cpu, cuda, cuda:N or auto") from None


def load_policy(model_cfg: ModelConfig, lora_cfg: LoraConfig, seed: int | None = None) -> tuple[nn.Module, object]:
    """The trainable policy: the base model with a fresh (or given) LoRA adapter, or all weights trainable.
    seed: the fresh adapter's initialisation (its A matrices are random) comes from it; None: from torch's
    global generator as it stands."""
    device = resolve_device(model_cfg.device)
    model, tokenizer = load_base(model_cfg)
    model = cast("PreTrainedModel", model.to(device))  # a transformers model, not yet wrapped by peft
    if model_cfg.gradient_checkpointing:
        # transformers 5.24 renamed it (the old name warns); earlier 5.x releases have only the old one
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        model.config.use_cache = False
    if model_cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_cfg.adapter, is_trainable=True)
    elif lora_cfg.enabled:
        from peft import LoraConfig as PeftLoraConfig, get_peft_model

        peft_cfg = PeftLoraConfig(
            r=lora_cfg.rank,
            lora_alpha=lora_cfg.alpha,  # type: ignore[arg-type]  # floats work
            lora_dropout=lora_cfg.dropout,
            target_modules=lora_cfg.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        # peft keeps adapter weights in float32 even when the base is bf16 (autocast_adapter_dtype).
        with torch.random.fork_rng(devices=[], enabled=seed is not None):  # the global generator is left as it was
            if seed is not None:
                torch.manual_seed(seed)
            model = get_peft_model(model, peft_cfg)
    else:
        model = model.float()
        for p in model.parameters():
            p.requires_grad_(True)
    if is_lora(model):
        fuse_lora_layers(model)  # one autograd node per LoRA layer (reasonrl/fused_lora.py)
    model.eval()  # no dropout in rollouts or log-prob passes; LoRA dropout is 0 by default
    if model_cfg.gradient_checkpointing:
        checkpoint_in_eval_mode(model)
    return model, tokenizer


def checkpointing(model: nn.Module) -> bool:
    """Whether gradient checkpointing is on. The shared-prompt pass needs the prompt's KV cache with gradients,
    which checkpointed layers drop, so it then falls back to the plain pass."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def checkpoint_in_eval_mode(model: nn.Module) -> None:
    """transformers checkpoints a decoder layer only while that layer is in training mode, and the policy stays
    in eval mode (no dropout), so model.gradient_checkpointing would silently do nothing. Mark only the
    checkpointing layers as training: their dropout submodules keep their own (eval) flag."""
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(module, "_gradient_checkpointing_func"):
            module.training = True


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


@contextlib.contextmanager
def reference(model: nn.Module) -> Iterator[nn.Module]:
    """The reference policy: the LoRA model with its adapter disabled."""
    if not is_lora(model):
        raise ValueError(
            "a KL term to the reference needs LoRA (the reference is the adapter-disabled base); "
            "set algo.kl.coef=0 for full fine-tuning"
        )
    with model.disable_adapter():  # type: ignore[operator]
        yield model


def token_logprobs(
    model: nn.Module,
    tokens: Tensor,
    temperature: float = 1.0,
    attention_mask: Tensor | None = None,
    position_ids: Tensor | None = None,
) -> Tensor:
    """(B, T+1) token ids -> (B, T) float32 log-probs of tokens[:, 1:] under the model.

    attention_mask and position_ids are for the T inputs tokens[:, :-1]: a (B, T) padding mask or a (B, 1, T, T)
    additive mask (packed rows, see sft.py), and (B, T) positions. Works in chunks over time so the full
    (B, T, V) float32 log-softmax is never materialised at once.
    """
    return _token_forward(model, tokens, temperature, attention_mask, with_entropy=False, position_ids=position_ids)[0]


def _token_forward(
    model: nn.Module,
    tokens: Tensor,
    temperature: float,
    attention_mask: Tensor | None,
    with_entropy: bool,
    position_ids: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    inputs = tokens[:, :-1]  # (B, T)
    out = model(
        input_ids=inputs, attention_mask=attention_mask, position_ids=position_ids, use_cache=False, logits_to_keep=0
    )
    return _chunked_logprobs(out.logits, tokens[:, 1:], temperature, with_entropy)  # (B, T), (B, T)


def _chunked_logprobs(
    logits: Tensor, targets: Tensor, temperature: float, with_entropy: bool = False
) -> tuple[Tensor, Tensor | None]:
    """(B, T, V) logits, (B, T) targets -> (B, T) float32 log-probs and, when asked, (B, T) entropies of the
    tempered distribution, 64 positions at a time. Entropy reuses the chunk's logsumexp:
    H = logsumexp(z) - sum_v softmax(z)_v z_v, so it costs one softmax more and keeps its gradient."""
    if not with_entropy:
        return TokenLogprobs.apply(logits, targets, temperature), None
    chunks, entropies = [], []
    for start in range(0, logits.shape[1], CHUNK):
        part = logits[:, start : start + CHUNK].float() / temperature  # (B, t, V)
        lse = torch.logsumexp(part, dim=-1)  # (B, t)
        picked = part.gather(-1, targets[:, start : start + CHUNK, None]).squeeze(-1)  # (B, t)
        chunks.append(picked - lse)
        entropies.append(lse - (part.softmax(-1) * part).sum(-1))  # (B, t)
    return torch.cat(chunks, dim=1), torch.cat(entropies, dim=1)  # (B, T), (B, T)


CHUNK = 64  # positions per float32 (B, CHUNK, V) temporary


class TokenLogprobs(torch.autograd.Function):
    """log softmax(z / T)[target] at every position of (B, T, V) logits z, in float32, CHUNK positions at a time.

    The same values and gradient as log_softmax + gather under autograd, with the logits' gradient
    (onehot(target) - softmax(z / T)) * g / T written chunk by chunk into one buffer: autograd's version
    allocates several logits-sized temporaries (the scaled copy, the logsumexp backward, the gather's scatter,
    the slices). On the bundled model's 49k vocabulary, forward + backward of a 16 x (56 + 64)-token micro-batch
    went from 4.77 to 4.40 s in fp32 (3.77 to 3.52 s in bf16), with bit-identical log-probs and gradients."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, temperature: float) -> Tensor:
        wide = torch.promote_types(logits.dtype, torch.float32)  # float32 (float64 stays)
        out = logits.new_empty(targets.shape, dtype=wide)  # (B, T)
        lse = torch.empty_like(out)  # (B, T)
        for start in range(0, logits.shape[1], CHUNK):
            part = logits[:, start : start + CHUNK].to(wide)  # (B, t, V)
            part = part if temperature == 1.0 else part / temperature
            lse[:, start : start + CHUNK] = torch.logsumexp(part, dim=-1)
            out[:, start : start + CHUNK] = part.gather(-1, targets[:, start : start + CHUNK, None]).squeeze(-1)
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        return out - lse

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        scale = grad.to(lse.dtype) / ctx.temperature  # (B, T) g / T
        out = torch.empty_like(logits)  # (B, T, V)
        for start in range(0, logits.shape[1], CHUNK):
            span = slice(start, start + CHUNK)
            part = logits[:, span].to(lse.dtype)  # (B, t, V)
            part = part if ctx.temperature == 1.0 else part / ctx.temperature
            work = out[:, span] if out.dtype == lse.dtype else torch.empty_like(part)
            torch.sub(part, lse[:, span, None], out=work)
            work.exp_().mul_(-scale[:, span, None])  # -softmax * g / T
            work.scatter_add_(-1, targets[:, span, None], scale[:, span, None])  # + onehot * g / T
            if work.dtype != out.dtype:
                out[:, span] = work
        return out, None, None


def completion_spans(mask: Tensor) -> tuple[Tensor, Tensor] | None:
    """(B, T) mask -> (start, length) of each row's trained span, or None when some row's True positions are
    not one contiguous run (multi-turn) or a row has none."""
    length = mask.sum(-1)  # (B,)
    if bool((length == 0).any()):
        return None
    start = mask.float().argmax(-1)  # (B,) first True
    positions = torch.arange(mask.shape[1], device=mask.device)[None, :]
    span = (positions >= start[:, None]) & (positions < (start + length)[:, None])
    return (start, length) if bool((span == mask).all()) else None


def shared_prompt_logprobs(
    model: nn.Module, tokens: Tensor, mask: Tensor, group_ids: Tensor, temperature: float = 1.0
) -> Tensor:
    """Same result as token_logprobs on the trained positions, but each group's prompt is run once.

    tokens (B, T+1) right-padded [prompt, completion, pad]; mask (B, T) one contiguous span per row; rows
    with equal group_ids (B,) share their prompt. Positions outside the mask get log-prob 0.
    """
    return _shared_forward(model, tokens, mask, group_ids, temperature, with_entropy=False)[0]


def _shared_forward(
    model: nn.Module, tokens: Tensor, mask: Tensor, group_ids: Tensor, temperature: float, with_entropy: bool
) -> tuple[Tensor, Tensor | None]:
    """shared_prompt_logprobs with optional (B, T) entropies. The prompts' KV cache (with gradients) is computed
    once per group and indexed out to its rows, then the completions run on top of it.
    """
    from transformers import DynamicCache

    from reasonrl.engine.decoding import cache_argument, last_position, left_pad

    spans = completion_spans(mask)
    assert spans is not None, "shared_prompt_logprobs needs one contiguous completion per row"
    start, length = spans  # (B,), (B,)
    groups, row_to_group = torch.unique_consecutive(group_ids, return_inverse=True)
    first_row = [int((row_to_group == g).nonzero()[0]) for g in range(len(groups))]
    prompts = [tokens[r, : int(start[r]) + 1].tolist() for r in first_row]  # prompt = tokens[:start+1]
    ids, attn = (x.to(tokens.device) for x in left_pad(prompts, pad_id=0))  # (U, L)
    cache = DynamicCache()
    kwargs = {cache_argument(model): cache}
    last = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
        logits_to_keep=last_position(ids),
        **kwargs,
    ).logits[:, -1]  # (U, V)
    cache.batch_select_indices(row_to_group)
    width = int(length.max())
    offsets = torch.arange(width, device=tokens.device)[None, :]  # (1, C)
    index = (start[:, None] + 1 + offsets).clamp(max=tokens.shape[1] - 1)  # (B, C)
    completion = tokens.gather(1, index)  # (B, C)
    row_attn = torch.cat([attn[row_to_group], torch.ones_like(completion)], dim=1)  # (B, L+C)
    positions = attn.sum(-1)[row_to_group][:, None] + offsets  # (B, C)
    # the first completion token is scored by the prompt's last position, the rest by the completion pass
    # (kept apart: concatenating the two logits tensors copied B x C x V floats forward and backward)
    logp, entropy = _chunked_logprobs(last[row_to_group][:, None], completion[:, :1], temperature, with_entropy)
    if width > 1:
        rest = model(
            input_ids=completion[:, :-1],
            attention_mask=row_attn[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
            **kwargs,
        ).logits  # (B, C-1, V)
        more = _chunked_logprobs(rest, completion[:, 1:], temperature, with_entropy)  # (B, C-1) x 2
        logp = torch.cat([logp, more[0]], dim=1)  # (B, C)
        entropy = None if entropy is None else torch.cat([entropy, more[1]], dim=1)  # type: ignore[list-item]
    inside = offsets < length[:, None]  # (B, C) zero past each row's end

    def place(x: Tensor) -> Tensor:  # (B, C) completion positions -> (B, T)
        out = x.new_zeros(mask.shape[0], mask.shape[1] + width)
        return out.scatter(1, start[:, None] + offsets, x * inside)[:, : mask.shape[1]]

    return place(logp), None if entropy is None else place(entropy)


def policy_logprobs(
    model: nn.Module, tokens: Tensor, mask: Tensor, groups: Tensor | None, temperature: float = 1.0
) -> Tensor:
    """(B, T) log-probs on the trained positions: shared prompts when the layout allows, else a plain pass."""
    return policy_logprobs_entropy(model, tokens, mask, groups, temperature, with_entropy=False)[0]


def policy_logprobs_entropy(
    model: nn.Module,
    tokens: Tensor,
    mask: Tensor,
    groups: Tensor | None,
    temperature: float = 1.0,
    with_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """policy_logprobs and (B, T) token entropies of the tempered policy (None when with_entropy is False)."""
    with half_precision_adapter(model):
        if groups is not None and completion_spans(mask) is not None and not checkpointing(model):
            return _shared_forward(model, tokens, mask, groups, temperature, with_entropy)
        return _token_forward(model, tokens, temperature, None, with_entropy)


@contextlib.contextmanager
def half_precision_adapter(model: nn.Module) -> Iterator[None]:
    """With a bf16 base, run the LoRA matmuls in bf16 too (the fp32 adapter weights are cast on the fly and
    stay the optimizer's master copy; autocast, as mixed-precision trainers do). Without it peft casts every
    layer's input to fp32 and its output back, which was a third of the update's time on CPU. Log-probs,
    losses and the optimizer stay fp32. A no-op for fp32 models and full fine-tuning."""
    base = next(model.parameters())
    if base.dtype != torch.bfloat16 or not is_lora(model):
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with torch.autocast(base.device.type, dtype=torch.bfloat16), disable_input_dtype_casting(model):
        yield


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
