"""WeightUpdate: what the learner sends the rollout engine after each optimizer step. A value, not a model reference:
a policy version and plain CPU tensors, so it can be pickled, put in Ray's object store, or handed to vLLM.

    LoRA:  {layer: LoraDelta(A (r, in), B (out, r), scaling)}   the engine serves W0 + scaling * B @ A
    full:  {parameter name: tensor}                            the engine loads the tensors by name

The engine reports the version it serves, and the run checks it (engine.verify).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from peft import PeftConfig


@dataclass(frozen=True)
class LoraDelta:
    a: Tensor
    """lora_A weight, (r, in)."""
    b: Tensor
    """lora_B weight, (out, r)."""
    scaling: float
    """alpha / r (alpha / sqrt(r) with rsLoRA), as the adapter was built."""
    fan_in_fan_out: bool = False
    """The base layer stores W as (in, out) (GPT-2's Conv1D): the delta is transposed."""

    def delta(self) -> Tensor:
        """scaling * B @ A (out, in), computed as peft's get_delta_weight does (so merged weights match it)."""
        product = self.b @ self.a
        return (product.t() if self.fan_in_fan_out else product) * self.scaling


@dataclass(frozen=True)
class WeightUpdate:
    version: int
    """The policy version: optimizer steps taken so far (0 before training)."""
    lora: dict[str, LoraDelta] = field(default_factory=dict)
    """Layer name (as in the plain base model, e.g. model.layers.0.mlp.up_proj) -> its adapter."""
    full: dict[str, Tensor] = field(default_factory=dict)
    """Full fine-tuning: parameter name (plain model) -> tensor."""
    lora_config: dict[str, Any] | None = None
    """The adapter's peft config (r, lora_alpha, target_modules, ...), for an engine that builds its own adapter."""

    @property
    def kind(self) -> str:
        return "lora" if self.lora else "full"

    def nbytes(self) -> int:
        tensors = [t for d in self.lora.values() for t in (d.a, d.b)] + list(self.full.values())
        return sum(t.numel() * t.element_size() for t in tensors)


PEFT_PREFIX = "base_model.model."


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The peft LoRA layers of a model, by their name in the plain base model."""
    return {
        name.removeprefix(PEFT_PREFIX): m
        for name, m in model.named_modules()
        if hasattr(m, "get_delta_weight") and hasattr(m, "base_layer")
    }


def active_lora(m: nn.Module) -> tuple[str, Tensor, Tensor]:
    """A peft LoRA layer's one active adapter: its name, lora_A weight (r, in) and lora_B weight (out, r)."""
    lora_a, lora_b = cast(nn.ModuleDict, m.lora_A), cast(nn.ModuleDict, m.lora_B)
    (adapter,) = [a for a in cast("list[str]", m.active_adapters) if a in lora_a]
    return adapter, cast(Tensor, lora_a[adapter].weight), cast(Tensor, lora_b[adapter].weight)


@torch.no_grad()
def weights_of(policy: nn.Module, version: int, device: str | torch.device | None = "cpu") -> WeightUpdate:
    """The policy's trainable weights as a WeightUpdate: detached copies, on `device` (None: where they are,
    for an engine in the same process)."""

    def copy(t: Tensor) -> Tensor:
        return t.detach().to(t.device if device is None else device, copy=True)

    layers = lora_layers(policy)
    if layers:
        lora = {}
        for name, m in layers.items():
            adapter, a, b = active_lora(m)
            lora[name] = LoraDelta(
                copy(a),
                copy(b),
                float(cast("dict[str, float]", m.scaling)[adapter]),
                bool(getattr(m, "fan_in_fan_out", False)),
            )
        config = next(iter(cast("dict[str, PeftConfig]", policy.peft_config).values())).to_dict()
        return WeightUpdate(version, lora=lora, lora_config=config)
    return WeightUpdate(version, full={n: copy(p) for n, p in policy.named_parameters() if p.requires_grad})


def base_weights(policy: nn.Module) -> dict[str, Tensor]:
    """W0 of every LoRA layer (the frozen base weight, by reference: nothing is copied)."""
    return {name: cast(Tensor, cast(nn.Module, m.base_layer).weight) for name, m in lora_layers(policy).items()}


def perturbed(update: WeightUpdate, scale: float = 0.1, version: int | None = None) -> WeightUpdate:
    """A copy with one tensor changed (and optionally another version): for tests of the sync check."""
    version = update.version if version is None else version
    if update.lora:
        name = next(iter(update.lora))
        d = update.lora[name]
        lora = dict(update.lora)
        lora[name] = LoraDelta(d.a, d.b + scale * torch.ones_like(d.b), d.scaling, d.fan_in_fan_out)
        return WeightUpdate(version, lora=lora, lora_config=update.lora_config)
    name = next(iter(update.full))
    full = dict(update.full)
    full[name] = full[name] + scale
    return WeightUpdate(version, full=full)
