"""The steps reward: claim extraction, sympy checks, credit modes, bounds, and per-step rewards on tokens."""

from __future__ import annotations

import time

import pytest

from reasonrl.config import RewardConfig
from reasonrl.engine import Completion, SamplingParams
from reasonrl.envs import EnvContext, Environment
from reasonrl.rewards import REWARDS, StepScores
from reasonrl.rewards.claims import Unparseable, claims, parse_side, tokenize
from reasonrl.rewards.compose import RewardComposer
from reasonrl.rewards.steps import credit_values, verdicts
from reasonrl.rollout import char_to_token_ends, rollout
from reasonrl.tokenizer import ByteTokenizer
from reasonrl.types import Example

steps = REWARDS.get("steps")
EXAMPLE = Example(id="s/0", prompt=[{"role": "user", "content": "q"}], answer="4")


def holds(text: str) -> list[bool]:
    return [v.holds for v in verdicts(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("17 + 25 = 42", [("17 + 25", "42")]),
        ("so 12 * 3 = 36 = 30 + 6 apples", [("12 * 3", "36"), ("36", "30 + 6")]),
        ("3x = 12 => x = 4", [("3x", "12"), ("x", "4")]),
        ("Step 1: 7 - 2 = 5.", [("7 - 2", "5")]),
        ("$\\frac{1}{2} + \\frac{1}{4} = \\frac{3}{4}$", [("\\frac{1}{2} + \\frac{1}{4}", "\\frac{3}{4}")]),
        ("**Total:** 2 × 3 = **6**", [("2 × 3", "6")]),
        ("x ≈ 3 and 2 < 3 and a word = 5", []),
        ("code `i = i + 1` and\n```python\nx = x + 1\n```\n", []),
        ("1 +\n1 = 2", [("1", "2")]),
    ],
)
def test_claims(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(c.left, c.right) for c in claims(text)] == expected


def test_claim_offsets_point_at_the_original_text() -> None:
    text = "**First** 17 + 25 = 42, then $3 \\times 4 = 12$."
    ends = [c.end for c in claims(text)]
    assert [text[:e].rstrip()[-2:] for e in ends] == ["42", "12"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("17 + 25 = 42", [True]),
        ("17 + 25 = 43", [False]),
        ("10/3 = 3.33 and 22/7 = 3.15 and 0.1 + 0.2 = 0.3", [True, False, True]),
        ("2(x + 3) = 2x + 6 but 2(x + 3) = 2x + 3", [True, False]),
        ("3x + 2 = 14, so 3x = 12, so x = 4", [True, True]),  # the first equation is a premise
        ("3x = 12 => x = 5", [False]),
        ("x^2 = 9 so x = 3", [True]),
        ("a = 5, b = 3, so a + b = 8 and ab = 16", [True]),  # ab is a word: not a claim
        ("a = 5, b = 3, so a + b = 8 and a*b = 16", [True, False]),
        ("4 = 4 and 1 + 1 = 2 and 1 + 1 = 2", [True]),  # trivial and repeated claims do not count
        ("2^10 = 1024, 5² = 25, 2 x 3 = 6, -3 + 5 = 2", [True, True, True, True]),
    ],
)
def test_verdicts(text: str, expected: list[bool]) -> None:
    assert holds(text) == expected


def test_parser_bounds_and_no_eval() -> None:
    for text in ["9^9^9^9", "2^1000", "(x+y)^20", "1" * 40, "x^y", "1/0", "__import__('os')", "(1 + 2"]:
        with pytest.raises(Unparseable):
            parse_side([t for t in tokenize(text)])
    start = time.monotonic()
    hostile = " + ".join(["(a+b+c)^8"] * 5) + " = 1; " + "9^9^9^9^9 = 2; " * 50 + "x = " * 200 + "1"
    verdicts(hostile)
    assert time.monotonic() - start < 5


def test_credit_modes() -> None:
    results = [True, False, True, True]
    assert credit_values(results, "fraction") == [0.25, 0.0, 0.25, 0.25]
    assert credit_values(results, "all") == [0.0] * 4
    assert credit_values([True, True], "all") == [0.5, 0.5]
    assert credit_values(results, "first_error") == [0.25, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="not one of"):
        credit_values(results, "some")


def test_steps_reward() -> None:
    text = "17 + 25 = 42, and 3x = 12 => x = 5, and 6 * 7 = 42"
    fraction = steps(text, EXAMPLE)
    assert isinstance(fraction, StepScores) and fraction.total == pytest.approx(2 / 3)
    assert [end for end, _ in fraction.steps] == [12, 34, 50] and sum(v for _, v in fraction.steps) == fraction.total
    assert steps(text, EXAMPLE, credit="first_error").total == pytest.approx(1 / 3)
    assert steps(text, EXAMPLE, credit="all").total == 0.0
    assert steps("no math here", EXAMPLE) is None and steps("no math here", EXAMPLE, empty=0.0) == 0.0
    with pytest.raises(ValueError, match="credit='some'"):
        steps.check_options(credit="some")  # type: ignore[attr-defined]


def test_step_scores_through_the_composer() -> None:
    cfg = RewardConfig(components={"correct": 1.0, "steps": 0.5}, workers=1)
    with RewardComposer(cfg) as composer:
        good, bad, plain = composer.score(
            ["3x = 12 => x = 4\nAnswer: 4", "3x = 12 => x = 5\nAnswer: 5", "Answer: 4"], [EXAMPLE] * 3
        )
    assert good.parts == {"correct": 1.0, "steps": 1.0} and good.total == 1.5 and good.steps == [(16, 0.5)]
    assert bad.total == 0.0 and bad.steps == [(16, 0.0)]
    assert plain.parts["steps"] is None and plain.total == 1.0 and plain.steps == []


class WordTokenizer(ByteTokenizer):
    """Byte tokenizer whose ids >= 200 decode to whole words: token boundaries differ from characters."""

    words = {200: "17 + 25", 201: " = 42", 202: ", so 3x = 12", 203: " => x = 4", 204: "\nAnswer: 4"}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.words.get(i) or ByteTokenizer.decode(self, [i]) for i in ids)


class ScriptedEngine:
    """Returns the same completion for every sample."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        return [[Completion(list(self.ids), [0.0] * len(self.ids), True) for _ in range(n)] for _ in prompts]


def test_char_to_token_ends() -> None:
    tok = WordTokenizer()
    ids = [200, 201, 202, 203, 204]
    text = tok.decode(ids)
    assert char_to_token_ends(tok, ids, [7, 12, 13, len(text)]) == [0, 1, 2, 4]


def test_rollout_places_step_rewards_on_tokens() -> None:
    tok = WordTokenizer()
    ids = [200, 201, 202, 203, 204, tok.eos_token_id]
    cfg = RewardConfig(components={"correct": 1.0, "steps": 0.5}, workers=1)
    env = Environment("single_turn", EnvContext(rewards=RewardComposer(cfg)))
    try:
        (t,) = rollout(env, ScriptedEngine(ids), tok, [EXAMPLE], n=1, params=SamplingParams(8), seed=0)
    finally:
        env.close()
    first = t.mask.index(True)
    # claims: "17 + 25 = 42" ends in token 201, "x = 4" (checked against 3x = 12) in token 203
    assert t.step_token_ends == [first + 1, first + 3, len(t.tokens) - 1]
    assert t.step_rewards == pytest.approx([0.25, 0.25, 1.0]) and sum(t.step_rewards) == pytest.approx(t.reward)
    assert all(t.mask[e] for e in t.step_token_ends)
