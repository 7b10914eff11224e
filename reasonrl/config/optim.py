"""Config sections of the update and its evaluation: optim.* (optimizer, schedule, micro-batches) and eval.*."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    """LoRA learning rate (about 10x a full fine-tune's). `auto`: from the model's hidden size when the config
    loads (Tinker's formula, reasonrl/config/lr.py; the value is logged and saved in the run's config.yaml)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.99)
    """AdamW betas."""
    warmup_steps: int = 2
    """Linear learning-rate warmup over this many steps."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warmup."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value."""
    max_nonfinite_steps: int = 3
    """An optimizer step whose loss or gradient is NaN/inf is skipped (metric optim/skipped); after this many
    steps in a row where every update was skipped the run stops with an error (the last checkpoint is intact);
    0: never stop."""
    micro_batch_size: int = 16
    """Sequences per forward/backward; gradients accumulate over the batch."""
    micro_batch_tokens: int | None = 4096
    """Also cap rows x padded length per forward/backward (long multi-turn rows go fewer at a time: activations
    grow with tokens, ~0.85 MB per token for SmolLM2-135M in bf16); null: rows only."""


@dataclass(frozen=True)
class EarlyStopConfig:
    metric: str | None = None
    """A metric logged at evaluations (e.g. eval/accuracy, eval/pass@4, forget/text/value) to stop on; None:
    off. Needs eval.every > 0."""
    patience: int = 3
    """Stop after this many evaluations in a row without an improvement of more than min_delta."""
    min_delta: float = 0.0
    """The smallest change that counts as an improvement."""
    mode: Literal["max", "min"] = "max"
    """Whether higher (max) or lower (min) is better."""
    keep_best: bool = True
    """Save the adapter of the best evaluation to RUN_DIR/adapter_best (the run's adapter stays the last one)."""

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"eval.early_stop.patience must be >= 1, got {self.patience}")


@dataclass(frozen=True)
class EvalConfig:
    every: int = 0
    """Evaluate every N steps (0: only at the start and the end)."""
    before: Literal["auto", "always", "skip"] = "auto"
    """The start model's evaluation: auto reuses one cached by an earlier run of the same model, task and eval
    settings (<cache>/evals), always recomputes it, skip leaves it out (no before/after comparison)."""
    size: int | None = None
    """Number of held-out problems (None: task.eval_size)."""
    samples: int = 1
    """Samples per held-out problem (accuracy averages over them; pass@k and maj@k need k of them)."""
    temperature: float = 0.0
    """0 is greedy."""
    greedy: bool = True
    """When temperature > 0, also decode every problem greedily (one sample): the tables show greedy accuracy
    beside the sampled one (eval/greedy/*), since sampling can improve while the model's best answer does not."""
    max_new_tokens: int | None = None
    """None: sampling.max_new_tokens."""
    k: list[int] | None = None
    """The k of pass@k (unbiased) and maj@k (majority vote); None: 1 and eval.samples. k > eval.samples is
    skipped. Use temperature > 0 for k > 1."""
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    tasks: list[str] = field(default_factory=list)
    """More task names evaluated besides the run's task (each its own table, eval/<task>/* in training), with
    the run's rewards and prompt settings and the dataset's default options; e.g. [reasoning_gym:chain_sum]."""
