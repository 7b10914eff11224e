"""corridor: the examples of the corridor environment (reasonrl/envs/corridor.py), one per (start, goal) pair.

    task: {name: corridor, options: {length: 10, distances: [1, 2, 3]}}   # with env.name=corridor

Starts and goals are cells 0..length-1 with |goal - start| in `distances`, both directions. The pairs are
shuffled with a seed derived from task.seed; the first task.eval_size (at most a quarter of them) are held out.
The prompt is the instruction, then the first observation; task.instruction replaces the instruction.
"""

from __future__ import annotations

import random
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.envs.corridor import describe
from reasonrl.tasks import TASKS, Task, derive_seed, instruction, task_options
from reasonrl.types import Example, Message

MOVE_INSTRUCTION = "Walk to the goal. Reply with one letter: L to step left, R to step right."
"""The instruction of the corridor task (task.instruction=None)."""
_DEFAULTS: dict[str, Any] = {"length": 10, "distances": [1, 2, 3]}


def corridor_options(options: dict[str, Any]) -> tuple[int, list[int]]:
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"task corridor: unknown option(s) {unknown}; known: {sorted(_DEFAULTS)}")
    length, distances = (_DEFAULTS | options)["length"], (_DEFAULTS | options)["distances"]
    if (
        not isinstance(length, int)
        or not isinstance(distances, list)
        or not distances
        or not all(isinstance(d, int) and 0 < d < length for d in distances)
    ):
        raise ValueError(
            f"task corridor: options.length must be an int and options.distances a non-empty list of "
            f"ints in [1, length), got length={length!r}, distances={distances!r}; e.g. length: 10, "
            "distances: [1, 2, 3]"
        )
    return length, sorted(set(distances))


@TASKS.register("corridor")
@task_options(
    length=(_DEFAULTS["length"], "cells in the corridor"),
    distances=(_DEFAULTS["distances"], "how far from the goal an episode may start"),
)
def load_corridor(cfg: TaskConfig) -> Task:
    """Every (start, goal) pair, shuffled and split into train and eval."""
    length, distances = corridor_options(cfg.options)
    pairs = [(s, g) for s in range(length) for g in range(length) if abs(g - s) in distances]
    random.Random(derive_seed(cfg.seed, "corridor")).shuffle(pairs)
    held_out = min(cfg.eval_size, len(pairs) // 4)
    text = instruction(cfg, MOVE_INSTRUCTION)
    system: list[Message] = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    examples = []
    for start, goal in pairs:
        content = f"{text}\n{describe(start, goal)}" if text else describe(start, goal)
        examples.append(
            Example(
                id=f"corridor-{start}-{goal}",
                prompt=system + [{"role": "user", "content": content}],
                answer=str(goal),
                task=cfg.name,
                metadata={"start": start, "goal": goal},
                source=f"corridor#start={start},goal={goal}",
            )
        )
    return Task(name=cfg.name, train=examples[held_out:][: cfg.train_size], eval=examples[:held_out])
