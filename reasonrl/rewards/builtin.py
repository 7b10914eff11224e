"""Built-in rewards: correct (1/0 answer match), format (an "Answer: ..." last line), numeric (last number).

    correct   reasoning-gym examples: the dataset's own scorer on the extracted answer;
              others: math-verify equivalence, else numeric equality, else normalised string equality.
    format    1.0 when the last non-empty line is "Answer: <something>" (or a user regex matches).
    numeric   partial-credit fallback: the answer (or the last number written) equals the reference number.

They run in reward worker processes (rewards/isolation.py), which enforce the timeout, so math-verify's own
signal.alarm timeouts are switched off here (they would also fail outside the main thread).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import math_verify
import reasoning_gym

from reasonrl.rewards import REWARDS
from reasonrl.rewards.answers import (
    extract_answer,
    last_number,
    lenient_answer,
    normalize_text,
    numbers_equal,
    parse_number,
)

if TYPE_CHECKING:
    from reasonrl.types import Example

# Last non-empty line is "Answer: X", "**Answer:** X", "Final answer: X" (case-insensitive).
_ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+)?answer\s*\**\s*:\s*\**\s*[^\s*]", re.IGNORECASE)


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once per process that its timeout is off; here the worker process is the timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


def _math_parse(text: str) -> list[Any]:
    parsed = math_verify.parse(text, parsing_timeout=None)
    if not parsed and "$" not in text:
        parsed = math_verify.parse(f"${text}$", parsing_timeout=None)
    return parsed


def math_equal(pred: str, gold: str) -> bool:
    """math-verify equivalence of two answers ('\\frac{1}{2}' == '0.5'); False when either does not parse."""
    gold_parsed, pred_parsed = _math_parse(gold), _math_parse(pred)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None))


def answers_match(pred: str, gold: str) -> bool:
    """math-verify, then numeric equality, then normalised exact string match."""
    if math_equal(pred, gold) or numbers_equal(pred, gold):
        return True
    return normalize_text(pred) == normalize_text(gold)


def _candidates(completion: str, lenient: bool) -> list[str]:
    """The explicit answer ("Answer: X" or \\boxed{X}) when there is one. Otherwise, when lenient, the short
    last line and the last number written (e.g. "34 - 25 = 9" is right by its last number)."""
    explicit = extract_answer(completion)
    if explicit is not None or not lenient:
        return [explicit] if explicit is not None else []
    found = [lenient_answer(completion), last_number(completion)]
    return list(dict.fromkeys(a for a in found if a is not None))


@functools.lru_cache(maxsize=64)
def _rg_dataset(name: str, config_json: str) -> Any:
    """One reasoning-gym dataset object per (name, config), kept for the life of the worker."""
    return reasoning_gym.create_dataset(name, size=1, seed=0, **json.loads(config_json))


def reasoning_gym_score(info: dict[str, Any], answers: list[str]) -> float:
    """The dataset's own scorer on each candidate answer; the best score (0.0 when there is no candidate)."""
    dataset = _rg_dataset(info["dataset"], json.dumps(info["config"], sort_keys=True))
    return max((float(dataset.score_answer(a, info["entry"])) for a in answers), default=0.0)


@REWARDS.register("correct")
def correct(completion: str, example: Example, lenient: bool = True) -> float | None:
    """1.0 when the completion's answer matches the reference, else 0.0; None without a reference.

    reasoning-gym examples (metadata["reasoning_gym"]) use the dataset's scorer, which may give partial
    credit. lenient also tries a bare last line or the last number when there is no "Answer:"/\\boxed{}.
    """
    answers = _candidates(completion, lenient)
    info = example.metadata.get("reasoning_gym")
    if info is not None:
        return reasoning_gym_score(info, answers)
    if example.answer is None:
        return None
    return float(any(answers_match(a, example.answer) for a in answers))


@REWARDS.register("format")
def answer_format(completion: str, example: Example, pattern: str | None = None) -> float:
    """1.0 when the last non-empty line is "Answer: <something>", else 0.0.

    pattern: a regex searched anywhere in the completion instead (1.0 when it matches).
    """
    if pattern is not None:
        return float(re.search(pattern, completion) is not None)
    lines = [line for line in completion.splitlines() if line.strip()]
    return float(bool(lines) and _ANSWER_LINE.match(lines[-1]) is not None)


@REWARDS.register("numeric")
def numeric(completion: str, example: Example) -> float | None:
    """1.0 when the answer (if it is a number) or else the last number written equals the reference number.

    None when the reference is missing or not a number.
    """
    if example.answer is None or parse_number(example.answer) is None:
        return None
    answer = extract_answer(completion)
    guess = answer if answer is not None and parse_number(answer) is not None else last_number(completion)
    return float(guess is not None and bool(numbers_equal(guess, example.answer)))
