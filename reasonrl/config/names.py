"""Every registry name a config holds, looked up when it loads: a typo in algo.advantage, algo.loss.name,
engine.name, env.name, task.name (and eval.tasks, forget.tasks) or rewards.components fails with the key, the
closest name and the known ones before a model is loaded or a directory written.

Imports the registries (torch with them), so load_config(check_names=False) skips it where only the values
are needed.
"""

from __future__ import annotations

from typing import Any

from reasonrl.config.run import RunConfig
from reasonrl.registry import Registry


def lookup(registry: Registry[Any], name: str, key: str) -> None:
    """Raise ValueError naming the config key when `name` is not registered."""
    try:
        registry.get(name)
    except KeyError as e:
        raise ValueError(f"{key}: {e.args[0]}") from None


def check_task_name(name: str, options: dict[str, Any], key: str) -> None:
    """The task kind, and for reasoning_gym:<dataset> the dataset and its options."""
    from reasonrl.tasks import TASKS
    from reasonrl.tasks.gym import check_rg_options

    kind, _, dataset = name.partition(":")
    if kind not in TASKS:
        raise ValueError(
            f"{key}: unknown task kind {kind!r} in {name!r}; known: {', '.join(TASKS.names())} "
            "(e.g. 'reasoning_gym:basic_arithmetic' or 'jsonl')"
        )
    if kind == "reasoning_gym":
        try:
            check_rg_options(dataset, options)
        except ValueError as e:
            raise ValueError(str(e).replace("task.name", key, 1)) from None


def resolve_names(cfg: RunConfig) -> None:
    """Raise ValueError on the first name in cfg that no registry knows."""
    from reasonrl.algos.advantages import ADVANTAGES
    from reasonrl.algos.losses import POLICY_LOSSES
    from reasonrl.engine import ENGINES
    from reasonrl.envs import ENVS
    from reasonrl.rewards.compose import validate_reward_config

    lookup(ADVANTAGES, cfg.algo.advantage, "algo.advantage")
    lookup(POLICY_LOSSES, cfg.algo.loss.name, "algo.loss.name")
    lookup(ENGINES, cfg.engine.name, "engine.name")
    lookup(ENVS, cfg.env.name, "env.name")
    check_task_name(cfg.task.name, cfg.task.options, "task.name")
    for i, name in enumerate(cfg.eval.tasks):
        if name != cfg.task.name:
            check_task_name(name, {}, f"eval.tasks[{i}]")
    for i, (_, task) in enumerate(cfg.forget.task_configs()):
        check_task_name(task.name, task.options, f"forget.tasks[{i}]")
    validate_reward_config(cfg.rewards)
