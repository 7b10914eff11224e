"""gymnasium:<id or module:Class>: episodes of a text Gymnasium environment, for env.name=gymnasium.

    task.name=gymnasium:my_pkg.envs:GuessEnv task.options={kwargs of the environment} env.name=gymnasium

An example is one seed: the environment is reset with it and its first observation (plus task.instruction, empty
by default) is the prompt; the gymnasium environment (reasonrl/envs/adapters.py) resets with the same seed and
checks it sees the same observation. Train and eval seeds come from two seeds derived from task.seed. Eval
episodes have distinct first observations that no train episode shows (train ones may repeat), so an
environment whose first observation is always the same (hidden state) cannot be split this way: use your own
task whose examples carry metadata {"gymnasium": {"seed": ...}} with env.options.id instead.
"""

from __future__ import annotations

import random
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.envs.adapters import as_text, gymnasium_creator
from reasonrl.tasks import TASKS, Task, derive_seed, make_prompt
from reasonrl.types import Example

_TRIES_PER_EPISODE = 20


def first_observations(
    spec: str, kwargs: dict[str, Any], seed: int, count: int, exclude: set[str], unique: bool, what: str
) -> list[tuple[int, str]]:
    """(seed, first observation) of count episodes whose observation is not in exclude (nor repeated, if
    unique)."""
    creator = gymnasium_creator(spec)
    env = creator(**kwargs)
    rng = random.Random(seed)
    out: list[tuple[int, str]] = []
    seen = set(exclude)
    try:
        for _ in range(_TRIES_PER_EPISODE * count):
            if len(out) == count:
                break
            episode_seed = rng.randrange(2**31)
            observation = as_text(env.reset(seed=episode_seed)[0], "reset()")
            if observation in seen:
                continue
            if unique:
                seen.add(observation)
            out.append((episode_seed, observation))
    finally:
        env.close()
    if len(out) < count:
        raise ValueError(
            f"task {spec!r}: found only {len(out)} {what} episodes with a first observation that is "
            f"{'distinct and ' if unique else ''}not held out, of {count} wanted; lower "
            f"task.{what}_size (an environment with hidden state needs its own task: see "
            "reasonrl/tasks/text_gym.py)"
        )
    return out


@TASKS.register("gymnasium")
def load_gymnasium(cfg: TaskConfig) -> Task:
    """'gymnasium:<id>' with cfg.options as the environment's keyword arguments."""
    spec = cfg.name.partition(":")[2]
    if not spec:
        raise ValueError(
            f"task.name={cfg.name!r} names no environment; use 'gymnasium:<registered id>' or "
            "'gymnasium:<module>:<Class>'"
        )
    kwargs = dict(cfg.options)
    held_out = first_observations(spec, kwargs, derive_seed(cfg.seed, "eval"), cfg.eval_size, set(), True, "eval")
    train = first_observations(
        spec, kwargs, derive_seed(cfg.seed, "train"), cfg.train_size, {o for _, o in held_out}, False, "train"
    )

    def example(split: str, index: int, seed: int, observation: str) -> Example:
        meta = {"id": spec, "kwargs": kwargs, "seed": seed, "observation": observation}
        return Example(
            id=f"{spec}/{split}/{index}",
            prompt=make_prompt(observation, cfg, ""),
            task=cfg.name,
            metadata={"gymnasium": meta},
            source=f"{spec}#seed={seed}",
        )

    return Task(
        name=cfg.name,
        train=[example("train", i, s, o) for i, (s, o) in enumerate(train)],
        eval=[example("eval", i, s, o) for i, (s, o) in enumerate(held_out)],
    )
