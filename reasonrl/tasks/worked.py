"""Worked solutions that reasoning-gym problems imply, for datasets whose entries carry none (answer_cot).

    worked_solution("basic_arithmetic", {"expression": "4 - 1 - 7", ...}, "-4")  -> "4 - 1 = 3\\n3 - 7 = -4"
    worked_solution("leg_counting", {"animals": {"chicken": 14, "beetle": 3}}, "46")
        -> "14 chickens have 14 * 2 = 28 legs\\n3 beetles have 3 * 6 = 18 legs\\n28 + 18 = 46"

One line per step, every step an equality the `steps` reward can check, so a demonstration teaches the kind of
working that reward credits. The reasoning_gym task stores the result as metadata["solution"]; the reference
reply (tasks.shot_reply: SFT on the task's references, few-shot turns) then shows it before "Answer: <n>".
A solution is written only when its last line equals the dataset's answer; otherwise None (no demonstration
is better than a wrong one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_CHAIN = re.compile(r"^\s*-?\d+(\s*[-+]\s*\d+)+\s*$")


def _chain(metadata: dict[str, Any]) -> str | None:
    """'4 - 1 - 7' -> '4 - 1 = 3\\n3 - 7 = -4': additions and subtractions, left to right (no parentheses)."""
    expression = str(metadata.get("expression", ""))
    if not _CHAIN.match(expression):
        return None
    tokens = re.findall(r"\d+|[-+]", expression)
    if tokens[0] == "-":  # a leading sign belongs to the first number
        tokens = [f"-{tokens[1]}", *tokens[2:]]
    total, lines = int(tokens[0]), []
    for op, number in zip(tokens[1::2], tokens[2::2], strict=True):
        value = total + int(number) if op == "+" else total - int(number)
        lines.append(f"{total} {op} {number} = {value}")
        total = value
    return "\n".join(lines)


def _legs(metadata: dict[str, Any]) -> str | None:
    """One product per kind of animal, then their sum."""
    from reasoning_gym.arithmetic.leg_counting import ANIMALS

    animals = metadata.get("animals")
    if not isinstance(animals, dict) or not animals or any(a not in ANIMALS for a in animals):
        return None
    lines, parts = [], []
    for animal, count in animals.items():
        legs = int(count) * ANIMALS[animal]
        verb = "have" if count != 1 else "has"
        lines.append(f"{count} {animal}{'s' if count != 1 else ''} {verb} {count} * {ANIMALS[animal]} = {legs} legs")
        parts.append(legs)
    if len(parts) > 1:
        lines.append(f"{' + '.join(map(str, parts))} = {sum(parts)}")
    return "\n".join(lines)


WRITERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "basic_arithmetic": _chain,
    "chain_sum": _chain,
    "leg_counting": _legs,
}


def worked_solution(dataset: str, metadata: dict[str, Any], answer: str | None) -> str | None:
    """The worked solution of a reasoning-gym entry, or None when there is no writer or it disagrees."""
    writer = WRITERS.get(dataset)
    if writer is None or answer is None:
        return None
    solution = writer(metadata)
    if solution is None:
        return None
    last = solution.splitlines()[-1]
    result = re.findall(r"-?\d+", last.split("=")[-1])
    return solution if result and result[0] == str(answer).strip() else None
