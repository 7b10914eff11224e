"""Fitting a run to its device: the largest settings that fit (`reasonrl plan --fit`), the refusal at a run's
start, and out-of-memory errors that name their phase."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig
from reasonrl.errors import RunFailure
from reasonrl.plan.arch import Arch
from reasonrl.plan.model import Device, Plan, format_plan, gb, make_plan, plan_for


def fit(cfg: RunConfig, device: Device, arch: Arch, prompt: int) -> tuple[dict[str, Any], Plan] | None:
    """The largest micro-batch (without gradient checkpointing when it can), engine batch and vLLM share that
    fit the device, as overrides; decoding from the LoRA model instead of a merged copy when the copy does not
    fit. None when nothing fits (the base weights alone are too large)."""
    starts: list[dict[str, Any]] = [{}]
    if device.kind == "cpu" and cfg.keeps_freed_memory:  # a heap that follows the live tensors
        starts.append({"keep_freed_memory": False})
    if cfg.engine.name == "hf" and cfg.engine.hf.merge_lora:  # decode from the LoRA model: no copy of the weights
        starts += [start | {"engine.hf.merge_lora": False} for start in starts]
    for start in starts:
        found = _fit(cfg, device, arch, prompt, dict(start))
        if found is not None:
            return found
    return None


def _fit(
    cfg: RunConfig, device: Device, arch: Arch, prompt: int, overrides: dict[str, Any]
) -> tuple[dict[str, Any], Plan] | None:
    length = prompt + cfg.sampling.max_new_tokens
    if cfg.engine.name == "vllm" and device.kind == "cuda":
        static = sum(p.bytes for p in make_plan(cfg, device, arch, prompt).parts if p.phase == "static")
        share = max(0.05, min(0.9, int((FIT_SHARE * device.capacity - static) / device.capacity * 20) / 20))
        overrides["engine.vllm.gpu_memory_utilization"] = share
    engine = cfg.engine.batch_size
    while engine > 1 and not _fits(cfg, overrides | {"engine.batch_size": engine}, device, arch, prompt, "generate"):
        engine //= 2
    overrides["engine.batch_size"] = engine
    for gc in (False, True):
        rows = min(cfg.batch_size, max(cfg.optim.micro_batch_size, 1))
        while rows >= 1:
            trial = overrides | {
                "model.gradient_checkpointing": gc,
                "optim.micro_batch_size": rows,
                "optim.micro_batch_tokens": rows * length,
            }
            if _fits(cfg, trial, device, arch, prompt, None):
                return trial, make_plan(with_overrides(cfg, trial), device, arch, prompt)
            rows //= 2
    return None


FIT_SHARE = 0.9
"""--fit leaves a tenth of the device free: the allocator's fragmentation, other processes, the plan's error."""


def _fits(
    cfg: RunConfig, overrides: dict[str, Any], device: Device, arch: Arch, prompt: int, phase: str | None
) -> bool:
    plan = make_plan(with_overrides(cfg, overrides), device, arch, prompt)
    return (plan.phase_peak(phase) if phase else plan.peak) <= FIT_SHARE * device.capacity


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """cfg with dotted keys replaced (values already typed)."""
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        if not section:
            cfg = dataclasses.replace(cfg, **{leaf: value})
            continue
        parts = section.split(".")
        objs = [cfg]
        for name in parts:
            objs.append(getattr(objs[-1], name))
        new: Any = dataclasses.replace(objs[-1], **{leaf: value})
        for obj, name in zip(reversed(objs[:-1]), reversed(parts)):
            new = dataclasses.replace(obj, **{name: new})
        cfg = new
    return cfg


def format_overrides(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items())


def memory_check(cfg: RunConfig, say: Any = print) -> None:
    """At the start of a run: stop (memory_check=stop) or warn when the plan does not fit the device, with the
    table and the overrides that would make it fit."""
    if cfg.memory_check == "off":
        return
    try:
        plan = plan_for(cfg)
    except ValueError:
        return  # no shape to plan from (the load reports a bad model.path itself)
    if plan.fits:
        return
    found = fit(cfg, plan.device, plan.arch, plan.lengths["prompt"])
    advice = (
        f"these overrides fit (peak {gb(found[1].peak)} GiB): {format_overrides(found[0])}"
        if found
        else "no micro-batch fits: choose a smaller model, model.dtype=bfloat16, or a larger device"
    )
    message = (
        f"the memory plan's peak, {gb(plan.peak)} GiB in {plan.peak_phase}, is more than the "
        f"{gb(plan.device.capacity)} GiB of {plan.device.label}; {advice} (`reasonrl plan` shows the parts; "
        "memory_check=warn runs anyway)"
    )
    if cfg.memory_check == "warn":
        say(f"warning: {message}")
        return
    raise ValueError(format_plan(plan, cfg) + "\n\n" + message)


def write_fitted(recipe: str | None, overrides: list[str], fitted: dict[str, Any], out: Path) -> None:
    """The recipe with the command line's overrides and the fitted ones applied, as one YAML file."""
    import yaml

    from reasonrl.config.run import read_recipe
    from reasonrl.utils.config_io import parse_override, set_dotted
    from reasonrl.utils.files import atomic_write_text

    data = read_recipe(recipe) if recipe is not None else {}
    for text in overrides:
        set_dotted(data, *parse_override(text))
    for key, value in fitted.items():
        set_dotted(data, key, value)
    header = f"# {recipe or 'defaults'} fitted by `reasonrl plan --fit`: {format_overrides(fitted)}\n"
    atomic_write_text(out, header + yaml.safe_dump(data, sort_keys=False))


def is_out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory errors: CUDA's OutOfMemoryError, and the CPU allocator's "can't allocate memory"."""
    import torch

    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    )


@contextlib.contextmanager
def named_phase(cfg: RunConfig, phase: str, step: int) -> Iterator[None]:
    """Turn an out-of-memory error inside a phase (generate, update) into a RunFailure that names the phase, the
    step and the plan's prediction for it, with the overrides that fit."""
    try:
        yield
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        try:
            plan = plan_for(cfg)
            found = fit(cfg, plan.device, plan.arch, plan.lengths["prompt"])
            peak, free = gb(plan.phase_peak(phase)), gb(plan.device.capacity)
            predicted = f"the plan predicted a peak of {peak} GiB for it, of {free} GiB free now"
            advice = f"; settings that fit the plan: {format_overrides(found[0])}" if found else ""
        except ValueError:
            predicted, advice = "no plan could be made for this model", ""
        raise RunFailure(
            f"out of memory in the {phase} phase of step {step + 1} ({str(error).splitlines()[0][:120]}); "
            f"{predicted}{advice}; `reasonrl plan` shows the parts (the checkpoints written before are intact)"
        ) from error


class StepPhases:
    """The phases of a training step (generate, update): each one's peak memory as memory/<phase>_gb (the plan's
    prediction to hold it against), and an out-of-memory error inside one turned into a RunFailure naming it."""

    def __init__(self, cfg: RunConfig) -> None:
        from reasonrl.utils.memory import PhasePeaks

        self.cfg, self.peaks = cfg, PhasePeaks(cfg.model.device)
        self.metrics: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str, step: int) -> Iterator[None]:
        self.peaks.start()
        with named_phase(self.cfg, name, step):
            yield
        self.metrics[f"memory/{name}_gb"] = self.peaks.peak_gb()
