"""Tasks: a name in the config -> train and held-out eval Examples.

    task = load_task(TaskConfig(name="reasoning_gym:basic_arithmetic", options={"max_terms": 2}))
    task = load_task(TaskConfig(name="jsonl", path="data.jsonl", prompt_field="question"))
    task = load_task(TaskConfig(name="code", few_shot=1))
    task.train, task.eval                                  # list[Example], disjoint by question (checked)

Kinds (TASKS): reasoning_gym:<dataset> (tasks/gym.py); jsonl, json, csv, parquet, hf (tasks/files.py);
code, the built-in Python problems with unit tests (tasks/code.py); arithmetic, small sums with worked
solutions (tasks/arithmetic.py). Generated tasks use two seeds derived
from task.seed; files are split by a hash of (task.seed, prompt), so the same data and seed always give
the same split. Prompt = [system prompt] + [few-shot pairs] + user message (question + "\\n" + instruction).
Few-shot examples come from train only, chosen per example by a seed derived from (task.seed, example id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from reasonrl.config import TaskConfig
from reasonrl.registry import Registry
from reasonrl.types import Example, Message

ANSWER_INSTRUCTION = "Give your final answer on the last line in the form: Answer: <answer>"
"""The instruction of math and question-answer tasks (task.instruction=None)."""
CODE_INSTRUCTION = "Reply with the complete Python function in one ```python code block."
"""The instruction of problems that have unit tests (task.instruction=None)."""


@dataclass(frozen=True)
class Task:
    name: str
    train: list[Example]
    eval: list[Example]
    """Held-out problems; no question here appears in train."""


TaskLoader = Callable[[TaskConfig], Task]
TASKS: Registry[TaskLoader] = Registry("task")


def task_options(**options: tuple[Any, str]) -> Callable[[TaskLoader], TaskLoader]:
    """Declare the task.options a task takes, name=(default, what it does), for `reasonrl list --options NAME`."""

    def add(loader: TaskLoader) -> TaskLoader:
        cast(Any, loader).task_options = options  # read by reasonrl/listing.py
        return loader

    return add


def load_task(cfg: TaskConfig) -> Task:
    """Build the task named by cfg.name ('<kind>' or '<kind>:<argument>'). Raises ValueError on bad input."""
    kind = cfg.name.partition(":")[0]
    if kind not in TASKS:
        raise ValueError(
            f"unknown task kind {kind!r} in task.name={cfg.name!r}; known: "
            f"{', '.join(TASKS.names())} (e.g. 'reasoning_gym:basic_arithmetic' or 'jsonl')"
        )
    task = TASKS.get(kind)(cfg)
    check_disjoint(task)
    return add_few_shot(task, cfg.few_shot, cfg.seed) if cfg.few_shot else task


def check_disjoint(task: Task) -> None:
    """Raise if an eval question also appears in train (the held-out set would not be held out)."""
    seen = {prompt_key(e.prompt) for e in task.train}
    leaked = [e.id for e in task.eval if prompt_key(e.prompt) in seen]
    if leaked:
        raise ValueError(f"task {task.name!r}: {len(leaked)} eval examples also appear in train (first: {leaked[0]!r})")


def prompt_key(prompt: list[Message] | str) -> str:
    """A canonical string for a prompt, used to compare and hash problems."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def derive_seed(seed: int, purpose: str) -> int:
    """A stable 31-bit seed for one purpose ('train', 'eval'); Python's hash() is salted per process."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{purpose}".encode()).digest()[:4], "big") >> 1


def instruction(cfg: TaskConfig, default: str) -> str:
    """task.instruction, or the task's own default when it is None."""
    return default if cfg.instruction is None else cfg.instruction


def make_prompt(question: str, cfg: TaskConfig, default_instruction: str = ANSWER_INSTRUCTION) -> list[Message]:
    """[system prompt if set] + the question with the instruction on its own line."""
    text = instruction(cfg, default_instruction)
    content = f"{question}\n{text}" if text else question
    system: list[Message] = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return system + [{"role": "user", "content": content}]


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so metadata survives JSON and compares equal after a round trip."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------
# Few-shot examples


def shot_reply(example: Example) -> str | None:
    """The reference reply to an example (few-shot turns, SFT on task references): for a record with unit
    tests, its solution in a ```python block; else a worked solution (metadata "solution", or reasoning-gym's
    "answer_cot") followed by "Answer: <answer>"; else "Answer: <answer>"; None when there is nothing."""
    solution = example.metadata.get("solution")
    if isinstance(solution, str) and solution.strip() and "tests" in example.metadata:
        return f"```python\n{solution.strip()}\n```"
    rg_entry = example.metadata.get("reasoning_gym", {}).get("entry", {})
    worked = solution if isinstance(solution, str) else rg_entry.get("metadata", {}).get("answer_cot")
    answer = None if example.answer is None else f"Answer: {example.answer}"
    if isinstance(worked, str) and worked.strip():
        worked = worked.strip()
        has_answer_line = worked.splitlines()[-1].lower().startswith("answer:")
        return worked if answer is None or has_answer_line else f"{worked}\n{answer}"
    return answer


def with_shots(example: Example, shots: list[Example]) -> Example:
    """The example with user/assistant pairs from `shots` inserted after its system message(s)."""
    pairs: list[Message] = []
    for shot in shots:
        pairs += [
            {"role": "user", "content": shot.prompt[-1]["content"]},
            {"role": "assistant", "content": shot_reply(shot) or ""},
        ]
    head = 0
    while head < len(example.prompt) and example.prompt[head]["role"] == "system":
        head += 1
    return dataclasses.replace(example, prompt=example.prompt[:head] + pairs + example.prompt[head:])


def add_few_shot(task: Task, k: int, seed: int) -> Task:
    """Prepend k solved train examples to every prompt. Shots are drawn from train only (never eval), per
    example with a seed derived from (seed, example id), and never include the example itself."""
    pool = [e for e in task.train if shot_reply(e) is not None and e.prompt[-1]["role"] == "user"]
    if len(pool) <= k:
        raise ValueError(
            f"task.few_shot={k} needs more than {k} solved train examples (with an answer or a "
            f"solution); task {task.name!r} has {len(pool)}. Lower task.few_shot"
        )

    def shots_for(example: Example) -> list[Example]:
        rng = random.Random(derive_seed(seed, f"few_shot/{example.id}"))
        candidates = [e for e in pool if e.id != example.id]
        return rng.sample(candidates, k)

    return Task(
        name=task.name,
        train=[with_shots(e, shots_for(e)) for e in task.train],
        eval=[with_shots(e, shots_for(e)) for e in task.eval],
    )


# register the task kinds
from reasonrl.tasks import arithmetic, code, code_repos, corridor, files, gym, sokoban, text_gym  # noqa: E402,F401
from reasonrl.tasks.gym import reasoning_gym_names  # noqa: E402,F401  (used by `reasonrl list`)
