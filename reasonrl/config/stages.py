"""Config sections of the stages around RL: forgetting checks (forget.*), metric sinks and the report (log.*),
supervised fine-tuning (sft.*) and the from-scratch pipeline's pretraining (pretrain.*).

Part of RunConfig (reasonrl/config/run.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reasonrl.config.task import TaskConfig
from reasonrl.utils.config_io import build

SINKS = ("tensorboard", "wandb")


@dataclass(frozen=True)
class ForgetConfig:
    enabled: bool = False
    """Measure forgetting at step 0 and at every evaluation: retention suites and the KL to the base (RL's
    Razor). Costs, per evaluation, the retention suites plus kl_prompts*kl_samples policy completions (and the
    base completions once)."""
    tasks: list[str | dict[str, Any]] = field(default_factory=list)
    """Retention tasks the run does not train on: task names ('reasoning_gym:leg_counting') or mappings of
    task.* fields ({name: jsonl, path: prior.jsonl}); accuracy on task_size held-out problems each."""
    task_size: int = 50
    """Held-out problems per retention task (greedy or sampled as eval.*)."""
    text: str | None = "bundled"
    """General text scored by mean log-likelihood per token: 'bundled' (reasonrl/data/general_text.txt), the
    path of a UTF-8 text file, or None (no text suite)."""
    text_tokens: int = 128
    """Tokens per text chunk."""
    kl_prompts: int = 16
    """New-task prompts for the KL (the first held-out ones)."""
    kl_samples: int = 4
    """Completions per KL prompt: base samples (forward KL, drawn once and reused) and policy samples (reverse
    KL, same seed at every evaluation)."""
    kl_budget: float | None = None
    """Forward KL from the base to the policy (nats per completion) that the run may reach; None: no budget."""
    on_budget: Literal["warn", "stop"] = "warn"
    """Past the budget: 'warn', or 'stop' the run and keep as its adapter the evaluated step with the best
    eval accuracy whose KL was within budget."""

    def __post_init__(self) -> None:
        for key in ("task_size", "kl_prompts", "kl_samples"):
            if getattr(self, key) < 1:
                raise ValueError(f"forget.{key} must be >= 1, got {getattr(self, key)}")
        if self.text_tokens < 2:
            raise ValueError(
                f"forget.text_tokens must be >= 2 (a chunk scores its tokens after the first), got {self.text_tokens}"
            )
        if self.kl_budget is not None and not self.kl_budget > 0:
            raise ValueError(f"forget.kl_budget must be > 0 nats (or null for no budget), got {self.kl_budget}")
        labels = [label for label, _ in self.task_configs()]
        if len(set(labels)) != len(labels):
            raise ValueError(f"forget.tasks names a suite twice ({', '.join(labels)}); give each task once")

    def task_configs(self) -> list[tuple[str, TaskConfig]]:
        """(suite label, TaskConfig) of every retention task: eval_size=task_size and a train split of the
        same size (only used to keep the held-out problems apart) unless the entry sets them."""
        out = []
        for i, entry in enumerate(self.tasks):
            fields = {"name": entry} if isinstance(entry, str) else dict(entry)
            if "name" not in fields:
                raise ValueError(f"forget.tasks[{i}] {entry!r} has no name; give e.g. {{name: jsonl, path: f.jsonl}}")
            fields = {"eval_size": self.task_size, "train_size": self.task_size} | fields
            task = build(TaskConfig, fields, f"forget.tasks[{i}]")
            label = task.name if task.path is None else f"{task.name}:{Path(task.path).stem}"
            out.append((label, task))
        return out


@dataclass(frozen=True)
class LogConfig:
    sinks: list[str] = field(default_factory=list)
    """Metric sinks besides metrics.jsonl (always written: the report and --resume read it): 'tensorboard'
    (event files in <run>/tensorboard; needs the tensorboard package) and 'wandb' (in <run>/wandb; needs wandb)."""
    wandb_project: str = "reasonrl"
    """W&B project of the run (the run is named after `name`)."""
    wandb_mode: Literal["offline", "online"] = "offline"
    """'offline' writes local files only (upload later with `wandb sync <run>/wandb/offline-run-*`); 'online'
    needs network and `wandb login`."""
    report: bool = True
    """Write report.html (curves, eval tables, browsable traces) into the run directory at the end of the run."""

    def __post_init__(self) -> None:
        for sink in self.sinks:
            if sink not in SINKS:
                raise ValueError(
                    f"log.sinks: unknown sink {sink!r}; known: {', '.join(SINKS)} (metrics.jsonl is always written)"
                )


@dataclass(frozen=True)
class SFTConfig:
    data: str | None = None
    """Demonstrations file (.jsonl, .json or .csv: a prompt and a completion per record); None: the task's
    reference solutions on its train split (a worked solution when the example has one, else 'Answer: <answer>')."""
    prompt_field: str = "prompt"
    """Field of a demonstration that holds the prompt (a string, or a list of chat messages)."""
    completion_field: str = "completion"
    """Field of a demonstration that holds the reply trained on (the assistant's turn, without the stop token)."""
    epochs: int = 1
    """Passes over the demonstrations (used when sft.steps is None)."""
    steps: int | None = None
    """Optimizer steps; None: as many as sft.epochs passes take."""
    batch_tokens: int = 4096
    """Tokens per optimizer step: batch_tokens // seq_len rows of at most seq_len tokens."""
    seq_len: int = 512
    """Tokens per row; a longer demonstration (prompt + completion + stop token) is an error."""
    pack: bool = True
    """Pack several demonstrations into one row; each attends only to itself (block-diagonal causal mask,
    positions restart at 0), so the loss equals the unpacked one. False: one demonstration per row."""
    lr: float | None = None
    """SFT learning rate (None: optim.lr)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or (self.steps is not None and self.steps < 1):
            raise ValueError(f"sft.epochs ({self.epochs}) and sft.steps ({self.steps}) must be >= 1")
        if self.seq_len < 2 or self.batch_tokens < self.seq_len:
            raise ValueError(
                f"sft.batch_tokens ({self.batch_tokens}) must be >= sft.seq_len ({self.seq_len}) >= 2: "
                "a step holds at least one row"
            )


@dataclass(frozen=True)
class RMConfig:
    pairs: str = "auto"
    """Preference pairs to learn from: a JSONL file of {prompt, chosen, rejected} (what `reasonrl feedback
    export` writes), or auto: a correct and an incorrect sample of the same problem, drawn from model.path on
    the task's train problems and scored by the task's `correct` reward."""
    auto_problems: int = 200
    """auto: train problems sampled (the first ones of task.train)."""
    auto_samples: int = 8
    """auto: samples per problem (at sampling.temperature); a problem gives pairs when it has both kinds."""
    auto_pairs_per_problem: int = 4
    """auto: at most this many (correct, incorrect) pairs of distinct answers per problem, drawn without
    repeating a pair."""
    margin: float = 0.0
    """Bradley-Terry margin: loss = -log sigmoid(r(chosen) - r(rejected) - margin) (Llama 2 uses 0 to 1)."""
    epochs: int = 2
    """Passes over the training pairs."""
    pairs_per_step: int = 8
    """Pairs per optimizer step (each pair is two sequences)."""
    eval_share: float = 0.2
    """Share of the prompts whose pairs are held out to measure pair accuracy (split by a hash of the prompt)."""
    max_length: int = 512
    """Tokens per (prompt, answer) sequence; longer ones are cut from the end."""
    lr: float | None = None
    """Learning rate (None: optim.lr)."""

    def __post_init__(self) -> None:
        if not 0 < self.eval_share < 1:
            raise ValueError(f"rm.eval_share must be between 0 and 1, got {self.eval_share}")
        if (
            min(self.epochs, self.pairs_per_step, self.auto_problems, self.auto_samples, self.auto_pairs_per_problem)
            < 1
        ):
            raise ValueError(
                "rm.epochs, rm.pairs_per_step, rm.auto_problems, rm.auto_samples and rm.auto_pairs_per_problem "
                "must be >= 1"
            )


@dataclass(frozen=True)
class PretrainConfig:
    text: str = "arithmetic"
    """Pretraining text of `reasonrl pipeline`: 'arithmetic' (addition facts covering every step of the
    arithmetic task's worked solutions, generated) or a path to a UTF-8 text file."""
    steps: int = 300
    """Optimizer steps of next-token training (loss on every token) of a randomly initialised Llama; 0: no
    pretraining, the pipeline starts SFT from model.path (e.g. the bundled model)."""
    batch_size: int = 32
    """Rows per step, each a window of the text starting with BOS."""
    seq_len: int = 64
    """Tokens per row."""
    lr: float = 3e-3
    """Peak learning rate: warmup over the first 5% of steps, then cosine decay to 0 (AdamW betas, weight decay
    and gradient clipping from optim.*)."""
    hidden_size: int = 128
    """Width of the random Llama (byte tokenizer, vocabulary 99)."""
    layers: int = 2
    """Transformer layers of the random Llama."""
    heads: int = 4
    """Attention heads of the random Llama (hidden_size must divide by it)."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"pretrain.steps must be >= 0 (0: SFT starts from model.path), got {self.steps}")
        sizes = {
            "batch_size": self.batch_size,
            "hidden_size": self.hidden_size,
            "layers": self.layers,
            "heads": self.heads,
            "seq_len": self.seq_len - 1,
        }
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(
                    f"pretrain.{key} must be >= {2 if key == 'seq_len' else 1}, got "
                    f"{value + 1 if key == 'seq_len' else value}"
                )
        if self.hidden_size % self.heads:
            raise ValueError(
                f"pretrain.hidden_size ({self.hidden_size}) must be divisible by pretrain.heads ({self.heads})"
            )
