"""Checkpoints: adapter (or model), optimizer, scheduler, RNG states and trainer state, written atomically.

A checkpoint is written to checkpoints/.tmp_step_N and renamed to checkpoints/step_N only when complete, so a
crash never leaves a half-written checkpoint behind; loaders only look at step_* directories.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from reasonrl.utils.faults import fault_point


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def disk_full(e: BaseException, path: Path) -> bool:
    """Did e come from a full disk? Its errno says so, or (torch.save and safetensors raise RuntimeError with no
    errno) the device at path has under 1 MiB left, the half-written file still on it."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return "No space left" in str(e) or shutil.disk_usage(path).free < 2**20
    except OSError:
        return False


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], write: Callable[[Path], None]) -> Path:
    """Write a checkpoint: write(dir) adds the roles' tensors (adapter, optimizer, critic), then the RNG states
    and trainer_state.json, then the atomic rename."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp_{checkpoint_name(step)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write(tmp)
        fault_point("checkpoint")
        torch.save(
            {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
            tmp / "rng.pt",
        )
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    except BaseException as e:  # a full disk, a failing writer: the half-written directory goes, earlier ones stay
        full = disk_full(e, root)
        shutil.rmtree(tmp, ignore_errors=True)
        if full and not isinstance(e, OSError):  # torch.save and safetensors wrap the OS error in their own
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from e
        raise
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def model_parts(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> Callable[[Path], None]:
    """save_checkpoint's writer for a model with its optimizer and schedule (sft)."""

    def write(path: Path) -> None:
        cast(Callable[[Path], None], model.save_pretrained)(path / "adapter")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, path / "optim.pt")

    return write


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def load_weights(model: nn.Module, adapter: Path) -> None:
    """Load a saved PEFT adapter (or, for full fine-tuning, whole model) into `model` in place."""
    from safetensors.torch import load_file

    weights = adapter / "adapter_model.safetensors"
    if weights.exists():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(weights)))
    else:
        model.load_state_dict(load_file(str(adapter / "model.safetensors")), strict=False)


def restore_checkpoint(path: Path) -> dict[str, Any]:
    """Restore the process's RNG states from a checkpoint; return its trainer state (the roles load their own
    tensors)."""
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    return json.loads((path / "trainer_state.json").read_text())


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states in place; return the trainer state (sft)."""
    load_weights(model, path / "adapter")
    optim_state = torch.load(path / "optim.pt", weights_only=False)
    optimizer.load_state_dict(optim_state["optimizer"])
    scheduler.load_state_dict(optim_state["scheduler"])
    return restore_checkpoint(path)
