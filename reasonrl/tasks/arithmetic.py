"""arithmetic: sums of small numbers with worked solutions, small enough for a byte-level model from scratch.

    task.name=arithmetic  task.options: {terms: 3, max_value: 9}   ->  question "3+5+9", answer "17",
    worked solution (metadata["solution"]) "3+5=8\\n8+9=17"; the reference reply adds "Answer: 17".

The worked solution adds the terms left to right, one line per partial sum, so every line is an addition
fact `a+b=c` with a <= (terms-1)*max_value and b <= max_value: exactly the facts `addition_facts` lists,
which `reasonrl pipeline` pretrains on. Eval problems are distinct and never in train (eval is drawn first,
then train from the rest, repeating problems only when the rest is smaller than task.train_size).
"""

from __future__ import annotations

import random
from typing import Any

from reasonrl.config import TaskConfig
from reasonrl.tasks import TASKS, Task, derive_seed, make_prompt, task_options
from reasonrl.types import Example

DEFAULTS = {"terms": 3, "max_value": 9}


def arithmetic_options(options: dict[str, Any]) -> tuple[int, int]:
    """(terms, max_value) from task.options, checked."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"task.options {sorted(unknown)} are not options of task arithmetic; valid: terms, max_value")
    terms, max_value = (options.get(k, v) for k, v in DEFAULTS.items())
    if not (isinstance(terms, int) and terms >= 2 and isinstance(max_value, int) and max_value >= 1):
        raise ValueError(
            f"task arithmetic needs integer options terms >= 2 and max_value >= 1, got terms={terms!r}, "
            f"max_value={max_value!r}"
        )
    return terms, max_value


def worked_solution(terms: list[int]) -> str:
    """'3+5=8\\n8+9=17' for [3, 5, 9]: one line per partial sum."""
    lines, total = [], terms[0]
    for term in terms[1:]:
        lines.append(f"{total}+{term}={total + term}")
        total += term
    return "\n".join(lines)


def addition_facts(options: dict[str, Any]) -> list[str]:
    """Every 'a+b=c' line a worked solution of this task can contain."""
    terms, max_value = arithmetic_options(options)
    return [f"{a}+{b}={a + b}" for a in range((terms - 1) * max_value + 1) for b in range(max_value + 1)]


def _example(numbers: tuple[int, ...], cfg: TaskConfig, split: str, index: int) -> Example:
    question = "+".join(map(str, numbers))
    return Example(
        id=f"arithmetic/{split}/{index}",
        prompt=make_prompt(question, cfg),
        answer=str(sum(numbers)),
        task=cfg.name,
        metadata={"solution": worked_solution(list(numbers))},
        source=question,
    )


@TASKS.register("arithmetic")
@task_options(
    terms=(DEFAULTS["terms"], "numbers in each sum (>= 2)"), max_value=(DEFAULTS["max_value"], "largest number")
)
def load_arithmetic(cfg: TaskConfig) -> Task:
    """Sums of task.options.terms numbers up to max_value, with worked solutions (for SFT warm starts)."""
    terms, max_value = arithmetic_options(cfg.options)
    space = (max_value + 1) ** terms
    if cfg.eval_size >= space:
        raise ValueError(
            f"task arithmetic with terms={terms}, max_value={max_value} has {space} distinct problems; "
            f"task.eval_size={cfg.eval_size} leaves none for training; lower it"
        )
    rng = random.Random(derive_seed(cfg.seed, "arithmetic"))

    def draw() -> tuple[int, ...]:
        return tuple(rng.randint(0, max_value) for _ in range(terms))

    held_out: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(held_out) < cfg.eval_size:
        numbers = draw()
        if numbers not in seen:
            seen.add(numbers)
            held_out.append(numbers)
    distinct_train = min(cfg.train_size, space - cfg.eval_size)
    train: list[tuple[int, ...]] = []
    while len(train) < distinct_train:  # distinct while the space allows, then repeats of them
        numbers = draw()
        if numbers not in seen:
            seen.add(numbers)
            train.append(numbers)
    train += [train[i % distinct_train] for i in range(cfg.train_size - distinct_train)]
    return Task(
        name=cfg.name,
        train=[_example(n, cfg, "train", i) for i, n in enumerate(train)],
        eval=[_example(n, cfg, "eval", i) for i, n in enumerate(held_out)],
    )
