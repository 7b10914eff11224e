"""`optim.lr: auto`: a learning rate for the model from its size, resolved when the config loads.

The formula is the Tinker cookbook's (hyperparam_utils.get_lr), fitted on supervised fine-tuning sweeps:
    lr = 5e-5 * M * (2000 / hidden_size) ** P
with M = 10 for LoRA (LoRA Without Regret, Schulman et al. 2025: the best LoRA rate is about 10x the best
full fine-tuning rate, across ranks) and 1 for full fine-tuning, P = 0.781 for Llama-family models (SmolLM2
is one) and 0.0775 for Qwen. It is a starting point for RL, not a tuned value: `reasonrl sweep` tunes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPONENTS = {"llama": 0.781, "mistral": 0.781, "qwen2": 0.0775, "qwen3": 0.0775, "qwen2_moe": 0.0775}
BUNDLED_HIDDEN = 576
"""SmolLM2-135M's hidden size, used before the bundled model is converted into the cache."""


def model_shape(path: str) -> tuple[int, str]:
    """(hidden_size, model_type) from a model's config.json, without loading it."""
    from reasonrl.model import BUNDLED, TINY

    if path == TINY:
        return 32, "llama"
    if path == BUNDLED:
        return BUNDLED_HIDDEN, "llama"
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        raise ValueError(f"optim.lr=auto reads the model's size from {config}, which does not exist")
    data = json.loads(config.read_text())
    return int(data["hidden_size"]), str(data.get("model_type", ""))


def recommended_lr(path: str, lora: bool) -> tuple[float, str]:
    """The learning rate for `path` and a line saying where it came from."""
    hidden, family = model_shape(path)
    exponent = EXPONENTS.get(family)
    note = ""
    if exponent is None:
        exponent, note = EXPONENTS["llama"], f"; no fitted exponent for model_type {family!r}: Llama's used"
    lr = 5e-5 * (10 if lora else 1) * (2000 / hidden) ** exponent
    how = "LoRA, 10x full fine-tuning" if lora else "full fine-tuning"
    return lr, f"optim.lr=auto: {lr:.3g} for hidden size {hidden} ({family}, {how}; Tinker's formula){note}"


def resolve_auto_lr(data: dict[str, Any]) -> str | None:
    """Replace optim.lr: auto in raw config data by its value; returns the line to log, or None."""
    optim = data.get("optim")
    if not isinstance(optim, dict) or optim.get("lr") != "auto":
        return None
    model = data.get("model") or {}
    lora = data.get("lora") or {}
    from reasonrl.model import BUNDLED

    lr, line = recommended_lr(str(model.get("path", BUNDLED)), bool(lora.get("enabled", True)))
    optim["lr"] = lr
    return line
