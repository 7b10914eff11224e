"""reasoning_gym:<dataset>: every reasoning-gym generator by name, its config options passed through, scored
by the dataset's own scorer (rewards.builtin.correct reads metadata["reasoning_gym"]).

Train and eval are generated with two seeds derived from task.seed; an eval problem whose question is also in
train (or earlier in eval) is replaced, so eval holds exactly task.eval_size unseen problems.
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.tasks import TASKS, Task, derive_seed, make_prompt, plain
from reasonrl.tasks.worked import worked_solution
from reasonrl.types import Example

_RESERVED_OPTIONS = {"seed": "task.seed", "size": "task.train_size / task.eval_size"}
"""reasoning-gym config fields that the task sets itself."""
_EVAL_TRIES_PER_EXAMPLE = 20
"""How many candidates per wanted eval problem before giving up on finding distinct unseen ones."""


def reasoning_gym_names() -> list[str]:
    """Every reasoning-gym dataset name (usable as task.name=reasoning_gym:<name>)."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def _rg_config_class(dataset: str) -> type:
    from reasoning_gym.factory import DATASETS

    if dataset not in DATASETS:
        close = difflib.get_close_matches(dataset, DATASETS, n=5, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown reasoning-gym dataset {dataset!r} in task.name{hint} (`reasonrl list` shows all {len(DATASETS)})"
        )
    return DATASETS[dataset][1]


def check_rg_options(dataset: str, options: dict[str, Any]) -> None:
    """Every option must be a field of the dataset's config (and not seed/size, which the task sets)."""
    valid = [f.name for f in fields(_rg_config_class(dataset)) if f.name not in _RESERVED_OPTIONS]
    for key in options:
        if key in _RESERVED_OPTIONS:
            raise ValueError(f"task.options.{key} is set by the task; use {_RESERVED_OPTIONS[key]} instead")
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"task.options.{key} is not an option of reasoning-gym dataset {dataset!r}{hint}; "
                f"valid options: {', '.join(valid)}"
            )


def _rg_dataset(dataset: str, options: dict[str, Any], seed: int, size: int) -> Any:
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(dataset, seed=seed, size=size, **options)
    except (AssertionError, ValueError, TypeError) as e:
        raise ValueError(
            f"reasoning-gym dataset {dataset!r} rejected task.options {options}: {type(e).__name__}: {e}"
        ) from e


def _rg_example(
    entry: dict[str, Any], dataset: str, options: dict[str, Any], cfg: TaskConfig, split: str, index: int, source: str
) -> Example:
    entry = plain(entry)
    answer = entry.get("answer")
    info = {"dataset": dataset, "config": plain(options), "entry": entry}
    metadata: dict[str, Any] = {"reasoning_gym": info}
    answer = None if answer is None else str(answer)
    if not entry.get("metadata", {}).get("answer_cot"):
        solution = worked_solution(dataset, entry.get("metadata", {}), answer)
        if solution is not None:
            metadata["solution"] = solution  # written by reasonrl/tasks/worked.py
    return Example(
        id=f"{dataset}/{split}/{index}",
        prompt=make_prompt(entry["question"], cfg),
        answer=answer,
        task=cfg.name,
        metadata=metadata,
        source=source,
    )


@TASKS.register("reasoning_gym")
def load_reasoning_gym(cfg: TaskConfig) -> Task:
    """'reasoning_gym:<dataset>' with cfg.options as the dataset config."""
    dataset = cfg.name.partition(":")[2]
    if not dataset:
        raise ValueError(
            f"task.name={cfg.name!r} names no dataset; use 'reasoning_gym:<dataset>', "
            "e.g. 'reasoning_gym:basic_arithmetic'"
        )
    check_rg_options(dataset, cfg.options)
    train_seed, eval_seed = derive_seed(cfg.seed, "train"), derive_seed(cfg.seed, "eval")
    generator = _rg_dataset(dataset, cfg.options, train_seed, cfg.train_size)
    train = [
        _rg_example(generator[i], dataset, cfg.options, cfg, "train", i, f"{dataset}#seed={train_seed},idx={i}")
        for i in range(cfg.train_size)
    ]
    tries = _EVAL_TRIES_PER_EXAMPLE * cfg.eval_size + 100
    generator = _rg_dataset(dataset, cfg.options, eval_seed, tries)
    seen = {e.metadata["reasoning_gym"]["entry"]["question"] for e in train}
    held_out: list[Example] = []
    for i in range(tries):
        entry = generator[i]
        if entry["question"] in seen:
            continue  # already in train, or a duplicate within eval
        seen.add(entry["question"])
        held_out.append(
            _rg_example(entry, dataset, cfg.options, cfg, "eval", len(held_out), f"{dataset}#seed={eval_seed},idx={i}")
        )
        if len(held_out) == cfg.eval_size:
            return Task(name=cfg.name, train=train, eval=held_out)
    raise ValueError(
        f"reasoning-gym dataset {dataset!r} with options {cfg.options} gave only {len(held_out)} "
        f"distinct problems outside train in {tries} tries, but task.eval_size={cfg.eval_size}; "
        "lower task.eval_size or task.train_size, or widen task.options"
    )
