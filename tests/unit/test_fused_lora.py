"""The fused LoRA layer (reasonrl/fused_lora.py) against peft's own forward: outputs and every gradient."""

import types

import pytest
import torch
from torch import nn

from reasonrl.fused_lora import LoraLinear, fuse_lora_layers, fused_forward
from reasonrl.model import token_logprobs


def lora_layer(bias: bool, dtype: torch.dtype = torch.float32, rank: int = 4):
    """A peft lora.Linear (24 -> 40) with a non-zero B, base weights in dtype, adapter weights in float32."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(24, 40, bias=bias)).to(dtype)
    model = get_peft_model(net, LoraConfig(r=rank, lora_alpha=8, target_modules=["0"]))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)
    return layer


def grads(layer, x, weights):
    """Output and the gradients of a weighted sum of it w.r.t. x, lora_A, lora_B (and the bias if trainable)."""
    x = x.clone().requires_grad_(True)
    out = layer(x)
    (out.float() * weights).sum().backward()
    params = [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
    result = [out.detach(), x.grad] + [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    return result


@pytest.mark.parametrize("bias", [False, True])
def test_fused_layer_equals_peft_forward_and_gradients(bias):
    layer = lora_layer(bias)
    x, w = torch.randn(3, 5, 24), torch.randn(3, 5, 40)
    expected = grads(layer, x, w)
    layer.forward = types.MethodType(fused_forward, layer)
    got = grads(layer, x, w)
    for name, e, g in zip(["out", "x", "A", "B"], expected, got):
        assert torch.allclose(e, g, rtol=1e-5, atol=1e-5), name


def test_bf16_base_with_float32_adapter_takes_peft_forward_bit_for_bit():
    """Mixed dtypes (a bf16 base under autocast, float32 adapter weights) stay on peft's path."""
    from peft.helpers import disable_input_dtype_casting

    layer = lora_layer(True, torch.bfloat16)
    x, w = torch.randn(4, 24, dtype=torch.bfloat16), torch.randn(4, 40)
    with torch.autocast("cpu", dtype=torch.bfloat16), disable_input_dtype_casting(layer):
        expected = grads(layer, x, w)
        layer.forward = types.MethodType(fused_forward, layer)
        got = grads(layer, x, w)
    assert all(torch.equal(e, g) for e, g in zip(expected, got))


def test_fused_function_passes_gradcheck_in_float64():
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: LoraLinear.apply(*t, 1.5), (x, weight, bias, a, b))


def test_disabled_or_merged_adapters_take_peft_forward():
    layer = lora_layer(True)
    layer.forward = types.MethodType(fused_forward, layer)
    x = torch.randn(2, 24)
    with_adapter = layer(x)
    layer.enable_adapters(False)  # what peft's disable_adapter() context does
    assert torch.allclose(layer(x), layer.base_layer(x))
    layer.enable_adapters(True)
    layer.merge()
    assert torch.allclose(layer(x), with_adapter, atol=1e-5)
    layer.unmerge()


def test_policy_is_fused_and_its_logprobs_and_gradients_match_unfused(tiny):
    """The policy load_policy returns routes every LoRA layer through the fused node; log-probs and adapter
    gradients equal peft's path."""
    model, _ = tiny
    fused = [m for m in model.modules() if "forward" in vars(m)]
    assert fused and all(vars(m)["forward"].__func__ is fused_forward for m in fused)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    tokens = torch.randint(3, model.config.vocab_size, (3, 12))

    def run():
        logp = token_logprobs(model, tokens)
        model.zero_grad()
        (logp * torch.linspace(-1, 1, logp.shape[1])).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    logp, g = run()
    for m in fused:
        del m.forward  # back to peft's class forward
    logp_ref, g_ref = run()
    assert torch.allclose(logp, logp_ref, atol=1e-5)
    worst = max(float((g[n] - g_ref[n]).abs().max() / g_ref[n].abs().max()) for n in g)
    assert worst < 1e-5  # rounding only (it was 7e-7 of the largest gradient)
    assert fuse_lora_layers(model) == len(fused)
