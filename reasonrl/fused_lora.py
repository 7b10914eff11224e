"""LoRA linear layers as one autograd node: y = x W^T + b + s (x A^T) B^T.

peft computes base(x) + lora_B(lora_A(x)) * s with separate modules, so every LoRA layer allocates and passes
over three output-sized tensors in the forward (the adapter's product, its scaled copy, the sum) and two more in
the backward (the scaled gradient, the sum of the input gradients). Here the adapter's rank-r product is added
into the base output by the same GEMM call (addmm with beta 1), and the input gradient the same way, so only
the base output and the input gradient are output-sized. Same values to rounding
(tests/unit/test_fused_lora.py checks outputs and gradients against peft's forward). On the benchmark's update
micro-batch (16 x (56 + 64) tokens, SmolLM2-135M, r16 on all linear layers, fp32) forward + backward went from
4.67 to 4.50 s.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from peft.tuners.lora.layer import Linear as PeftLoraLinear


class LoraLinear(torch.autograd.Function):
    """x (..., in), weight (out, in) and bias (out,) of the base layer, adapter a (r, in) and b (out, r), scaling s;
    all of one dtype."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, a: Tensor, b: Tensor, scaling: float
    ) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        low = flat @ a.t()  # (N, r)
        out = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())  # (N, out)
        out.addmm_(low, b.t(), alpha=scaling)  # + s (x A^T) B^T, in place
        ctx.save_for_backward(flat, low, weight, a, b)
        ctx.scaling, ctx.in_shape = scaling, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        flat, low, weight, a, b = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b, _ = ctx.needs_input_grad
        g = grad.reshape(-1, grad.shape[-1])  # (N, out)
        g_low = g @ b  # (N, r)
        grad_x = grad_w = grad_bias = grad_a = grad_b = None
        if need_x:
            grad_x = (g @ weight).addmm_(g_low, a, alpha=ctx.scaling).view(ctx.in_shape)  # g W + s (g B) A
        if need_w:
            grad_w = g.t() @ flat
        if need_bias:
            grad_bias = g.sum(0)
        if need_a:
            grad_a = (g_low.t() @ flat).mul_(ctx.scaling)  # s (g B)^T x   (r, in)
        if need_b:
            grad_b = (g.t() @ low).mul_(ctx.scaling)  # s g^T (x A^T) (out, r)
        return grad_x, grad_w, grad_bias, grad_a, grad_b, None


def fused_forward(self: PeftLoraLinear, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """A peft lora.Linear's forward through LoraLinear when it is plain LoRA: one active adapter, no dropout in
    effect, no variant (DoRA), no adapter bias, not merged or disabled, and x, base and adapter of one dtype.
    Anything else takes peft's own forward: a bf16 base under model.half_precision_adapter included, where the
    fused node (adapter cast to bf16) was slower, 3.75 against 3.64 s on the benchmark's micro-batch."""
    active = [name for name in self.active_adapters if name in self.lora_A]
    if args or kwargs or self.disable_adapters or self.merged or len(active) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    dropout, base = self.lora_dropout[name], cast(nn.Linear, self.base_layer)  # fuse_lora_layers checks the type
    lora_a, lora_b = cast(nn.Linear, self.lora_A[name]), cast(nn.Linear, self.lora_B[name])
    if (
        not x.dtype == base.weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype
        or lora_b.bias is not None
        or name in getattr(self, "lora_variant", {})
        or (dropout.training and not isinstance(dropout, nn.Identity))
    ):
        return type(self).forward(self, x, *args, **kwargs)
    return LoraLinear.apply(x, base.weight, base.bias, lora_a.weight, lora_b.weight, self.scaling[name])


def fuse_lora_layers(model: nn.Module) -> int:
    """Route every peft lora.Linear over an nn.Linear through fused_forward; returns how many."""
    from peft.tuners.lora.layer import Linear as PeftLoraLinear

    count = 0
    for module in model.modules():
        if (
            type(module) is PeftLoraLinear
            and type(module.base_layer) is nn.Linear
            and not getattr(module, "fan_in_fan_out", False)
        ):
            module.forward = types.MethodType(fused_forward, module)  # type: ignore[method-assign]  # per instance
            count += 1
    return count
