"""code: the built-in Python problems with unit tests (reasonrl/data/code_tasks.jsonl), for code_tests.

    reasonrl train recipes/code.yaml          # task.name=code, rewards.components={code_tests: 1.0}

Each record: id, prompt ("Write a Python function `f(x)` that ..."), tests (assert snippets) and a reference
solution (kept in metadata["solution"]: few-shot examples show it; tests/unit/test_tasks.py checks that
every reference passes its own tests in the sandbox). The file's field names are fixed, so task.path and the
field mapping are not used. The set is small (36 problems): task.eval_size is capped at a quarter of it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from reasonrl.config import TaskConfig
from reasonrl.tasks import TASKS, Task
from reasonrl.tasks.files import build_task, read_jsonl

logger = logging.getLogger(__name__)

CODE_TASKS = Path(__file__).parents[1] / "data" / "code_tasks.jsonl"


@TASKS.register("code")
def load_code(cfg: TaskConfig) -> Task:
    """The built-in code problems, split by prompt hash like any file."""
    rows = read_jsonl(CODE_TASKS)
    eval_size = min(cfg.eval_size, len(rows) // 4)
    if eval_size < cfg.eval_size:
        logger.warning(
            "task code has %d problems; using task.eval_size=%d instead of %d", len(rows), eval_size, cfg.eval_size
        )
    fixed = dataclasses.replace(
        cfg,
        path=str(CODE_TASKS),
        prompt_field="prompt",
        answer_field="answer",
        tests_field="tests",
        eval_size=eval_size,
        options={},
    )
    task = build_task(rows, fixed, str(CODE_TASKS), "code")
    return Task(name=cfg.name, train=task.train, eval=task.eval)
