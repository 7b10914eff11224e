"""`model.dtype: auto` (the default): bfloat16 where bf16 matrix products are native, float32 where they are not.
Resolved when the config loads, so the run's config.yaml records the dtype it ran in.

    GPU (model.device cuda, or auto with CUDA present)   bfloat16 when the GPU supports it, else float32
    CPU with AVX-512 (torch's capability "AVX512")       bfloat16: oneDNN's bf16 kernels, faster than float32
    CPU without it (AVX2-only x86, ARM, ...)             float32: torch emulates bf16 products there; on a 2-core
                                                         AVX2 EPYC a bf16 linear layer ran 7x slower than in
                                                         float32 and the product its backward needs 100x slower

An explicit model.dtype=bfloat16 on such a CPU is kept, with a warning when the model loads.
"""

from __future__ import annotations

from typing import Any


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX-512 and up), as torch dispatches them."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability()).startswith(("AVX512", "AMX"))


def auto_dtype(device: str) -> str:
    """The dtype model.dtype=auto picks for model.device=device."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def resolve_auto_dtype(data: dict[str, Any]) -> None:
    """Replace model.dtype: auto (or no model.dtype) in raw config data by the dtype for its device."""
    model = data.get("model")
    if model is None:
        model = data["model"] = {}
    if not isinstance(model, dict) or model.get("dtype", "auto") != "auto":
        return
    model["dtype"] = auto_dtype(str(model.get("device", "cpu")))


def slow_bf16_warning(dtype: str, device: str) -> str | None:
    """The warning for bfloat16 weights on a CPU that emulates bf16 products, or None."""
    if dtype != "bfloat16" or device not in ("cpu", "auto") or cpu_has_fast_bf16():
        return None
    import torch

    if device == "auto" and torch.cuda.is_available():
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"warning: model.dtype=bfloat16 on a CPU without AVX-512 (torch sees {capability}): bf16 matrix products "
        "are emulated here and run several times slower than float32 (up to 100x in the backward pass); "
        "model.dtype=auto picks float32 on this machine"
    )
