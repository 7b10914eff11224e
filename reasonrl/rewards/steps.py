"""steps: verified partial credit without a reward model. Each checkable claim of the solution is checked
with sympy; credit is the share that holds, and each claim is also a step reward for process supervision.

    steps("17 + 25 = 42, and 3x = 12 => x = 5", example)
    -> StepScores(total=0.5, steps=((12, 0.5), (33, 0.0)))      # 17+25=42 holds; x=5 does not solve 3x=12

Claims (rewards/claims.py) are judged as:
    numbers      `17 + 25 = 42`: exact rational equality; when a decimal literal with d places is involved,
                 |left - right| <= 0.5 * 10^-d (so `10/3 = 3.33` holds).
    identities   `2(x + 3) = 2x + 6`: left - right cancels to 0 -> holds; a non-zero number -> fails.
    equations    in one variable, `3x = 12 => x = 4`: every solution of the new equation must satisfy the
                 last valid equation in that variable; the first equation in a variable is a premise and is
                 not counted. A variable whose equation has one solution gets that value, so with
                 `a = 5, b = 3` the claim `a + b = 8` is checked; other several-variable equations are not.
Trivial claims (`4 = 4`) and repeats are not counted. A completion without a counted claim gets None
("not applicable"), or `empty` when set.

credit:  fraction     total = true / counted; a true step is worth 1/counted, a false one 0
         all          total = 1 when every counted claim holds, else 0 (steps 1/counted each, or all 0)
         first_error  total = true claims before the first false one / counted; steps after it get 0
Step values always sum to the total, so the composer can place them at the claims' positions.
Partial credit can be gamed by padding with easy true claims: keep `correct` the dominant weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sympy

from reasonrl.rewards import REWARDS, StepScores
from reasonrl.rewards.claims import Claim, Unparseable, claims, decimal_places, parse_side

if TYPE_CHECKING:
    from reasonrl.types import Example

CREDIT_MODES = ("fraction", "all", "first_error")
MAX_DEGREE = 4
"""Equations of higher degree in their variable are not solved (not counted)."""


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    holds: bool


def _numbers_equal(left: Any, right: Any, claim: Claim) -> bool:
    if left == right:
        return True
    places = decimal_places(claim.left_tokens + claim.right_tokens)
    if places is None:
        return False
    return bool(abs(left - right) <= sympy.Rational(1, 2) * sympy.Rational(1, 10**places))


def _solutions(difference: Any, symbol: Any) -> list[Any] | None:
    """Roots of difference = 0 in symbol, or None when it is not a polynomial of small degree."""
    numerator, denominator = sympy.fraction(sympy.together(difference))
    try:
        poly = sympy.Poly(numerator, symbol)
    except sympy.PolynomialError:
        return None
    if not 1 <= poly.degree() <= MAX_DEGREE:
        return None
    return [root for root in sympy.roots(poly, symbol) if sympy.cancel(denominator.subs(symbol, root)) != 0]


def _satisfies(difference: Any, symbol: Any, value: Any) -> bool:
    return bool(sympy.cancel(difference.subs(symbol, value)) == 0)


class Checker:
    """Judges claims in order; remembers the last valid equation of each variable."""

    def __init__(self) -> None:
        self.equations: dict[Any, Any] = {}  # symbol -> (left - right) of its last valid equation
        self.values: dict[Any, Any] = {}  # symbol -> its value, when that equation has exactly one solution
        self.seen: set[tuple[str, str]] = set()

    def judge(self, claim: Claim) -> bool | None:
        """True / False, or None when the claim is not counted (unparseable, trivial, premise, repeat)."""
        key = (claim.left.replace(" ", ""), claim.right.replace(" ", ""))
        if key[0] == key[1] or key in self.seen:
            return None
        self.seen.add(key)
        try:
            left, right = parse_side(claim.left_tokens), parse_side(claim.right_tokens)
        except (Unparseable, ZeroDivisionError, ValueError, TypeError):
            return None
        if left.is_number and right.is_number:
            return _numbers_equal(left, right, claim)
        difference = sympy.cancel(left - right)
        if difference == 0:
            return True
        if difference.is_number:
            return False  # e.g. 2(x + 3) = 2x + 3
        if difference.free_symbols <= set(self.values):  # a = 5, b = 3, so a + b = 8
            return bool(sympy.cancel(difference.subs(self.values)) == 0)
        return self._equation(difference)

    def _equation(self, difference: Any) -> bool | None:
        symbols = difference.free_symbols
        if len(symbols) != 1:
            return None
        (symbol,) = symbols
        solutions = _solutions(difference, symbol)
        if solutions is None:
            return None
        previous = self.equations.get(symbol)
        holds = (
            None if previous is None else bool(solutions) and all(_satisfies(previous, symbol, s) for s in solutions)
        )
        if holds is not False:  # a premise (nothing to check it against) or a valid step
            self.equations[symbol] = difference
            if len(solutions) == 1:
                self.values[symbol] = solutions[0]
        return holds


def verdicts(text: str, max_claims: int = 50) -> list[Verdict]:
    """The counted claims of text (at most max_claims) and whether each holds."""
    checker = Checker()
    out: list[Verdict] = []
    for claim in claims(text):
        holds = checker.judge(claim)
        if holds is not None:
            out.append(Verdict(claim, holds))
            if len(out) == max_claims:
                break
    return out


def credit_values(results: list[bool], mode: str) -> list[float]:
    """Per-step values (they sum to the total) for a list of claim results under a credit mode."""
    n = len(results)
    if mode == "fraction":
        return [1.0 / n if ok else 0.0 for ok in results]
    if mode == "all":
        return [1.0 / n if all(results) else 0.0 for _ in results]
    if mode == "first_error":
        first = results.index(False) if False in results else n
        return [1.0 / n if i < first else 0.0 for i in range(n)]
    raise ValueError(f"steps credit {mode!r} is not one of {', '.join(CREDIT_MODES)}")


def check_options(credit: str = "fraction", empty: float | None = None, max_claims: int = 50) -> None:
    """Called when the reward composer is built, so a bad option fails before training starts."""
    if credit not in CREDIT_MODES:
        raise ValueError(f"rewards.options.steps.credit={credit!r} is not one of {', '.join(CREDIT_MODES)}")
    if max_claims < 1:
        raise ValueError(f"rewards.options.steps.max_claims must be >= 1, got {max_claims}")


@REWARDS.register("steps")
def steps(
    completion: str, example: Example, credit: str = "fraction", empty: float | None = None, max_claims: int = 50
) -> StepScores | float | None:
    """Verified partial credit for the completion's checkable claims (see the module docstring)."""
    found = verdicts(completion, max_claims)
    if not found:
        return empty
    values = credit_values([v.holds for v in found], credit)
    return StepScores(total=sum(values), steps=tuple((v.claim.end, value) for v, value in zip(found, values)))


steps.check_options = check_options  # type: ignore[attr-defined]
