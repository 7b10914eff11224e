"""RunConfig, the whole run's configuration (one field per section), the rules between sections, and loading:
defaults < YAML recipe < dotted CLI overrides, validated once."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reasonrl.config.algo import AlgoConfig
from reasonrl.config.engine import EngineConfig, SamplingConfig
from reasonrl.config.dtype import resolve_auto_dtype
from reasonrl.config.lr import resolve_auto_lr
from reasonrl.config.model import LoraConfig, ModelConfig
from reasonrl.config.optim import EvalConfig, OptimConfig
from reasonrl.config.placement import PlacementConfig
from reasonrl.config.stages import ForgetConfig, LogConfig, PretrainConfig, RMConfig, SFTConfig
from reasonrl.config.task import FILE_TASKS, EnvConfig, RewardConfig, TaskConfig
from reasonrl.utils.config_io import blame_recipe, build, config_to_dict, parse_override, set_dotted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    """Run name: the run directory is output_dir/name."""
    output_dir: str = "runs"
    """Where run directories go."""
    seed: int = 0
    """Seed of prompt order, of the fresh LoRA adapter's initialisation and of sampling (each step samples with
    seed*1000003 + step). task.seed is separate: the train/eval split stays the same across seeds."""
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
    rm: RMConfig = field(default_factory=RMConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    save_every: int = 10
    """Checkpoint every N steps (and at the end)."""
    log_rollouts_every: int = 1
    """Write the sampled completions with their rewards every N steps (0: never)."""
    threads: int | None = None
    """torch threads (None: all cores)."""
    keep_freed_memory: bool = True
    """Linux/glibc: keep freed memory blocks (up to 1 GiB) in the process for reuse instead of handing them back to
    the OS, which makes the next tensor of that size page-fault in again (reasonrl/utils/host.py). The kept heap
    is not always reused, so peaks run higher; false maps blocks of 1 MiB and up on their own instead: resident
    memory follows the live tensors. Off by itself with model.gradient_checkpointing on a CPU, whose savings the
    kept heap undid (reasonrl `keeps_freed_memory`)."""
    memory_check: Literal["stop", "warn", "off"] = "stop"
    """Before a run starts, its memory plan (`reasonrl plan`) is held against the device's free memory: a plan that
    does not fit stops the run with the parts and the overrides that would fit (stop), is only reported (warn),
    or is not made (off)."""

    @property
    def keeps_freed_memory(self) -> bool:
        """keep_freed_memory as the process applies it: off with gradient checkpointing on a CPU (a checkpointed
        forward pass of the bundled model, 32 x 192 tokens, left 3 GiB of freed layer temporaries resident)."""
        return self.keep_freed_memory and not (
            self.model.gradient_checkpointing and not self.model.device.startswith("cuda")
        )

    def __post_init__(self) -> None:
        positive = {
            "steps": self.steps,
            "prompts_per_step": self.prompts_per_step,
            "samples_per_prompt": self.samples_per_prompt,
            "save_every": self.save_every,
            "optim.micro_batch_size": self.optim.micro_batch_size,
            "sampling.max_new_tokens": self.sampling.max_new_tokens,
            "lora.rank": self.lora.rank,
            "algo.epochs": self.algo.epochs,
            "algo.mini_batches": self.algo.mini_batches,
            "task.eval_size": self.task.eval_size,
            "rewards.workers": self.rewards.workers,
            "eval.samples": self.eval.samples,
        }
        if self.optim.micro_batch_tokens is not None:
            positive["optim.micro_batch_tokens"] = self.optim.micro_batch_tokens
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        if self.sampling.temperature <= 0:
            raise ValueError(
                f"sampling.temperature must be > 0 for RL (got {self.sampling.temperature}); "
                "greedy samples give a group no variance"
            )
        if self.eval.early_stop.metric is not None and not self.eval.every:
            raise ValueError(
                f"eval.early_stop.metric={self.eval.early_stop.metric!r} needs evaluations during the run: "
                "set eval.every (e.g. eval.every=5)"
            )
        if self.algo.kl.coef < 0:
            raise ValueError(f"algo.kl.coef must be >= 0, got {self.algo.kl.coef}")
        if self.batch_size % self.algo.mini_batches:
            raise ValueError(
                f"prompts_per_step*samples_per_prompt ({self.prompts_per_step}*{self.samples_per_prompt}"
                f"={self.batch_size}) must be divisible by algo.mini_batches ({self.algo.mini_batches})"
            )
        if self.algo.overlong.buffer > self.sampling.max_new_tokens:
            raise ValueError(
                f"algo.overlong.buffer ({self.algo.overlong.buffer}) must be <= sampling.max_new_tokens "
                f"({self.sampling.max_new_tokens}): the penalty zone is the last `buffer` tokens"
            )
        if self.algo.dynamic_sampling.enabled and self.samples_per_prompt < 2:
            raise ValueError(
                "algo.dynamic_sampling.enabled needs samples_per_prompt >= 2: a group of one sample "
                "always has equal rewards"
            )
        if not self.rewards.components:
            raise ValueError("rewards.components is empty; give at least one, e.g. {correct: 1.0}")
        if self.task.name in FILE_TASKS and not self.task.path:
            raise ValueError(f"task.name={self.task.name} needs task.path=<file or dataset>")
        if any(k < 1 for k in self.eval.k or ()):
            raise ValueError(f"eval.k must hold values >= 1 (the k of pass@k), got {self.eval.k}")
        for name in self.eval.tasks:
            if name.partition(":")[0] in FILE_TASKS and name != self.task.name:
                raise ValueError(
                    f"eval.tasks entry {name!r} needs a data file; only the run's own task can be a "
                    "file task (task.name=... task.path=...)"
                )
        if self.task.few_shot < 0:
            raise ValueError(f"task.few_shot must be >= 0, got {self.task.few_shot}")
        self._check_placement()

    def _check_placement(self) -> None:
        if self.placement.learners > 1 and self.algo.advantage == "gae":
            raise ValueError(
                f"placement.learners={self.placement.learners} with algo.advantage=gae: the critic trains "
                "on one learner only; use placement.learners=1 or a critic-free estimator (grpo, rloo, ...)"
            )
        if self.placement.name == "ray" and self.forget.enabled:
            raise ValueError(
                "forget.enabled with placement.name=ray: the forgetting monitor reads the policy in the "
                "controller's process; run it with placement.name=local (or `reasonrl forget` after the run)"
            )

    @property
    def batch_size(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt


MOVED = {"engine.merge_lora": "engine.hf.merge_lora", "engine.prefix_cache": "engine.hf.prefix_cache"}
"""Keys that moved, old -> new: a recipe or a run's config.yaml written before the move still loads."""


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML recipe; a missing, unreadable or malformed file raises one ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "not found"
        raise ValueError(f"config file {str(path)!r} {what}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (a recipe is YAML in UTF-8)") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(
            f"{where}: YAML syntax error: {problem}; fix the recipe (indentation, colons, quotes)"
        ) from None
    if loaded is None:
        raise ValueError(
            f"{path}: the recipe is empty; give the settings to change (e.g. `steps: 20`), or leave "
            "the recipe out to use the defaults"
        )
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping, got {type(loaded).__name__}")
    return loaded


RENAMED_VALUES = {"rewards.on_error": {"drop_group": "skip_group", "raise": "stop"}}
"""Values that were renamed, per key: old -> new."""


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Move keys listed in MOVED to their new place and rename RENAMED_VALUES (nested mappings, in place)."""
    for key, names in RENAMED_VALUES.items():
        section, _, leaf = key.rpartition(".")
        node = data.get(section) if isinstance(data, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str) and node[leaf] in names:
            node[leaf] = names[node[leaf]]
    for old, new in MOVED.items():
        *parents, leaf = old.split(".")
        node = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            set_dotted(data, new, node.pop(leaf))
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), check_names: bool = True
) -> RunConfig:
    """Defaults < YAML file < overrides. Raises ValueError with the offending key on any problem. check_names:
    also look up every registry name now (imports the registries; reasonrl/config/names.py)."""
    data = read_recipe(path) if path is not None else {}
    from_overrides = set()
    for text in overrides:
        key, value = parse_override(text)
        reset_options(data, MOVED.get(key, key), value)
        set_dotted(data, MOVED.get(key, key), value)
        from_overrides.add(MOVED.get(key, key))
    try:
        if line := resolve_auto_lr(data):
            print(line, file=sys.stderr, flush=True)
        resolve_auto_dtype(data)
        cfg = build(RunConfig, migrate(data))
        if check_names:
            from reasonrl.config.names import resolve_names

            resolve_names(cfg)
    except ValueError as e:  # a value from the recipe: its file and line in front
        if path is None:
            raise
        raise ValueError(
            blame_recipe(Path(path), Path(path).read_text(encoding="utf-8"), str(e), from_overrides)
        ) from None
    return cfg


NAMED_OPTIONS = {
    "task.name": "task.options",
    "env.name": "env.options",
    "algo.loss.name": "algo.loss",
    "algo.loss": "algo.loss",
}
"""Overrides that pick another task, environment or loss, and where the old one's options live."""


def reset_options(data: dict[str, Any], key: str, value: Any) -> None:
    """An override that changes task.name, env.name or the loss drops the options of the old one (logged): a
    reasoning-gym dataset's options mean nothing to another dataset."""
    if key not in NAMED_OPTIONS:
        return
    section, _, leaf = NAMED_OPTIONS[key].rpartition(".")
    parent: object = data
    for part in section.split("."):
        parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict):
        return
    if key.startswith("algo.loss"):
        loss = parent.get(leaf)
        old = loss.get("name", "ppo_clip") if isinstance(loss, dict) else loss
        new = value.get("name", "ppo_clip") if isinstance(value, dict) else value
        dropped = {k: v for k, v in loss.items() if k != "name"} if isinstance(loss, dict) else {}
        if old != new and dropped:
            parent[leaf] = {"name": old}
            logger.warning("algo.loss changed from %s to %s: dropped the old loss's settings %s", old, new, dropped)
        return
    old_name = parent.get("name")
    if old_name is not None and old_name != value and parent.get(leaf):
        logger.warning(
            "%s changed from %s to %s: dropped %s %s (they belonged to %s)",
            key,
            old_name,
            value,
            NAMED_OPTIONS[key],
            parent[leaf],
            old_name,
        )
        parent[leaf] = {}


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """A copy of cfg with dotted overrides applied and validated again."""
    data = config_to_dict(cfg)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, MOVED.get(key, key), value)
    if line := resolve_auto_lr(data):
        print(line, file=sys.stderr, flush=True)
    resolve_auto_dtype(data)
    return build(RunConfig, migrate(data))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from reasonrl.utils.files import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
