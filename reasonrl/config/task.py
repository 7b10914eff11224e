"""Config sections of what the policy is trained on: task.* (the problems), rewards.* (how answers are scored)
and env.* (single-turn or multi-turn episodes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FILE_TASKS = ("jsonl", "json", "csv", "parquet", "hf")
"""Task kinds that read task.path."""


@dataclass(frozen=True)
class TaskConfig:
    name: str = "reasoning_gym:basic_arithmetic"
    """'reasoning_gym:<dataset>'; a file ('jsonl', 'json', 'csv', 'parquet', with path); 'hf' (a Hugging Face
    dataset: a save_to_disk directory, or a name or data directory in the local cache, with path); 'code'
    (the built-in Python problems with unit tests); or 'corridor' (walks to a goal, for env.name=corridor)."""
    path: str | None = None
    """Data file (or dataset directory / name) for file-based and hf tasks."""
    options: dict[str, Any] = field(default_factory=dict)
    """Passed to the task's generator (reasoning-gym: its dataset config, e.g. max_terms: 2; hf: split, name)."""
    prompt_field: str = "prompt"
    """Field of a file record that holds the prompt (a string or a list of chat messages)."""
    answer_field: str = "answer"
    """Field of a file record that holds the reference answer (optional in records that have tests)."""
    tests_field: str = "tests"
    """Field of a file record that holds unit tests for code_tests: a list of assert snippets or one source."""
    system_prompt: str | None = None
    """None uses the chat template's default."""
    instruction: str | None = None
    """Appended to every question. None: the task's own ('Answer: <answer>' last line; a ```python block for
    code); empty string: nothing."""
    few_shot: int = 0
    """Solved examples shown before each question, drawn deterministically from train (never from eval)."""
    train_size: int = 5000
    """Training problems (generated tasks make this many; files are capped at it)."""
    eval_size: int = 100
    """Held-out problems, never used for training (checked)."""
    seed: int = 0
    """Seed of the train/eval split, of few-shot choices and of generated problems."""


@dataclass(frozen=True)
class RewardConfig:
    components: dict[str, float] = field(default_factory=lambda: {"correct": 1.0, "format": 0.1})
    """Reward name -> weight. Names from `reasonrl list`, or 'module:function' / 'path/file.py:function'."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-component keyword arguments, e.g. {format: {pattern: '...'}, steps: {credit: first_error}}."""
    gates: dict[str, str] = field(default_factory=dict)
    """Component -> the component that must pass for it to count, e.g. {format: correct} (threshold 1.0) or
    {format: 'correct>=0.5'}. Gated parts are still logged."""
    timeout_s: float = 10.0
    """Per-call timeout of a reward function (it runs in a worker process)."""
    workers: int = 2
    """Reward worker processes."""
    on_error: Literal["zero", "skip_group", "stop"] = "zero"
    """What a reward that fails on a sample (raises, times out, returns NaN, inf or a non-number, kills its worker)
    gives: score 0, leave the sample's group out of the update, or stop the run. Each failure is logged with the
    reward, its error and the sample."""
    max_failure_share: float = 0.5
    """Breaker: a reward that fails on more than this share of a step's samples stops the run, naming the reward,
    its last error and the sample, whatever on_error says (a reward broken on every call would train on zeros);
    1.0: never."""
    max_timeouts_in_row: int = 4
    """Breaker: this many calls in a row that time out stop the run at once (the step's other calls are not
    waited for); 0: never."""
    memory_mb: int = 4096
    """Memory limit of each reward worker process (its data segment); a call that passes it fails with
    MemoryError and the worker is replaced. 0: no limit."""

    def __post_init__(self) -> None:
        if not 0 < self.max_failure_share <= 1 or self.max_timeouts_in_row < 0 or self.memory_mb < 0:
            raise ValueError(
                f"rewards.max_failure_share must be in (0, 1] and rewards.max_timeouts_in_row, "
                f"rewards.memory_mb >= 0, got {self.max_failure_share}, {self.max_timeouts_in_row}, "
                f"{self.memory_mb}"
            )


@dataclass(frozen=True)
class EnvConfig:
    name: str = "single_turn"
    """Registered environment (`reasonrl list`): single_turn scores one answer; others run several turns."""
    max_turns: int | None = None
    """Most policy turns per episode (None: the environment's default_max_turns, 1 for single_turn)."""
    max_context_tokens: int = 4096
    """An episode whose conversation would pass this many tokens ends, marked truncated."""
    options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment, e.g. {tools: [calculator]}."""
