"""Memory plan: the peak memory of a run, part by part, predicted from the model's config alone (nothing is loaded).

    reasonrl plan recipes/quickstart.yaml [key=value ...] [--device cpu|cpu:24GB|cuda|cuda:80GB] [--fit]

A run holds some parts for its whole life (the process, the base weights, the engine's copy, the trainable
parameters with their gradients and AdamW state, the critic) and adds, one phase at a time, what that phase needs:
generation the KV cache of its batch, the update the activations of one micro-batch kept for the backward pass
and the gradient of the logits. The peak is the static total plus the largest phase. Activation sizes count the
tensors autograd saves in these models (Llama, Qwen2, Qwen3 layouts with LoRA on all linear layers or full
fine-tuning, with and without gradient checkpointing); tests/unit/test_plan.py checks those counts against the
saved tensors of real forward passes, and bench/plan_grid.py checks whole predictions against measured peaks.

`--fit` searches the micro-batch (rows and token cap), gradient checkpointing, the engine's batch and vLLM's
GPU share for the largest settings that fit, and prints them as overrides. `reasonrl train` refuses a run whose
plan does not fit its device before anything is written (memory_check=stop; warn or off to run anyway).
"""

from reasonrl.plan.arch import Arch, resolve_arch
from reasonrl.plan.fit import StepPhases, fit, format_overrides, memory_check, named_phase, with_overrides, write_fitted
from reasonrl.plan.model import GiB, Device, Part, Plan, format_plan, gb, make_plan, parse_device, plan_for, saved_bytes

__all__ = [
    "Arch",
    "StepPhases",
    "Device",
    "GiB",
    "Part",
    "Plan",
    "fit",
    "format_overrides",
    "format_plan",
    "gb",
    "make_plan",
    "memory_check",
    "named_phase",
    "parse_device",
    "plan_for",
    "resolve_arch",
    "saved_bytes",
    "with_overrides",
    "write_fitted",
]
