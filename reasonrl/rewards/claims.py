"""Extract checkable equalities from a solution's text and parse them into sympy, without eval.

    claims("17 + 25 = 42, so 3x = 12 => x = 4")
    -> [Claim("17 + 25", "42", end=12), Claim("3x", "12", end=25), Claim("x", "4", end=34)]

A claim is two neighbouring sides of a chain `a = b = c` on one line. The text is tokenized with offsets
into the original string (numbers, single-letter variables, + - * / ^ x ÷ · and LaTeX \\times \\cdot \\div
\\frac{}{}, parentheses and braces, ² ³); words, implications (=>, ⇒, \\implies), other relations and
punctuation end a chain. Code (``` fences and `inline`) is skipped. parse_side() is a small recursive-descent
parser that builds sympy objects directly (so nothing is eval'd) and refuses sizes that could blow up:
long sides, huge numbers, big or symbolic exponents, many variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sympy

_TOKEN = re.compile(
    r"""
   (?P<space>[ \t]+|\$|\\[()\[\],;! ]|(?<![\w)])\*\*(?=[\w(])|(?<=[\w)])\*\*(?![\w(]))
  |(?P<num>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
  |(?P<frac>\\[dt]?frac(?![A-Za-z]))
  |(?P<imp>==>|=>|⇒|⟹|→|->|\\implies(?![A-Za-z])|\\Rightarrow(?![A-Za-z])|\\to(?![A-Za-z]))
  |(?P<op>\\times(?![A-Za-z])|\\cdot(?![A-Za-z])|\\div(?![A-Za-z])|\*\*|[-+*/^×÷·⋅−])
  |(?P<lp>\\left\(|[({])|(?P<rp>\\right\)|[)}])
  |(?P<sup>[²³])
  |(?P<eq>=)
  |(?P<word>[A-Za-z]{2,}|\\[A-Za-z]+)
  |(?P<var>[A-Za-z])
  |(?P<other>.)
""",
    re.VERBOSE,
)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_MATH_KINDS = {"num", "var", "op", "lp", "rp", "frac", "sup", "eq"}
_OPS = {"×": "*", "·": "*", "⋅": "*", "\\times": "*", "\\cdot": "*", "÷": "/", "\\div": "/", "−": "-", "**": "^"}

MAX_SIDE_TOKENS = 60
"""Longer sides are not parsed (an expression this long is not a checkable step)."""
MAX_DIGITS = 30
MAX_EXPONENT = 64
"""Largest |numeric exponent| accepted; symbolic bases get MAX_SYMBOLIC_EXPONENT."""
MAX_SYMBOLIC_EXPONENT = 8
MAX_RESULT_DIGITS = 2000
"""A power whose value would have more digits than this makes the side unparseable."""
MAX_SYMBOLS = 3


class Unparseable(Exception):
    """The tokens are not an expression this parser accepts (or exceed its size bounds)."""


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Claim:
    left: str
    right: str
    end: int
    """Offset just past the claim's right side in the original text."""
    left_tokens: tuple[Token, ...]
    right_tokens: tuple[Token, ...]


def tokenize(text: str) -> list[Token]:
    """Tokens with offsets; code spans are blanked first (same length, so offsets stay those of `text`)."""
    blanked = _CODE.sub(lambda m: " " * len(m.group()), text)
    tokens = [Token(m.lastgroup or "other", m.group(), m.start(), m.end()) for m in _TOKEN.finditer(blanked)]
    tokens = [t for t in tokens if t.kind != "space"]
    for i, t in enumerate(tokens):  # "2 x 3": a lone x between two numbers means times
        if (
            t.kind == "var"
            and t.text == "x"
            and 0 < i < len(tokens) - 1
            and tokens[i - 1].kind == "num"
            and tokens[i + 1].kind == "num"
        ):
            tokens[i] = Token("op", "*", t.start, t.end)
    return tokens


def _runs(tokens: list[Token], text: str) -> list[list[Token]]:
    """Maximal sequences of math tokens on one line."""
    runs: list[list[Token]] = [[]]
    for t in tokens:
        same_line = not runs[-1] or "\n" not in text[runs[-1][-1].end : t.start]
        if t.kind in _MATH_KINDS and same_line:
            runs[-1].append(t)
        elif t.kind in _MATH_KINDS:
            runs.append([t])
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if any(t.kind == "eq" for t in r)]


def _trim(side: list[Token]) -> list[Token]:
    """Drop dangling operators and brackets at the ends ("= 42 -" -> "42"; "(a = b)" -> "a", "b")."""
    while side and (side[0].kind in ("op", "rp") and side[0].text not in ("-", "−") or side[0].kind == "sup"):
        side = side[1:]
    while side and side[-1].kind in ("op", "lp", "frac"):
        side = side[:-1]
    if side and side[0].kind == "lp" and sum(t.kind == "lp" for t in side) > sum(t.kind == "rp" for t in side):
        side = side[1:]
    if side and side[-1].kind == "rp" and sum(t.kind == "rp" for t in side) > sum(t.kind == "lp" for t in side):
        side = side[:-1]
    return side


def claims(text: str) -> list[Claim]:
    """Every `a = b` (and each link of `a = b = c`) with two non-empty sides, in order of appearance."""
    out: list[Claim] = []
    for run in _runs(tokenize(text), text):
        sides: list[list[Token]] = [[]]
        for t in run:
            if t.kind == "eq":
                sides.append([])
            else:
                sides[-1].append(t)
        sides = [_trim(s) for s in sides]
        for left, right in zip(sides, sides[1:]):
            if left and right:
                out.append(
                    Claim(
                        text[left[0].start : left[-1].end],
                        text[right[0].start : right[-1].end],
                        right[-1].end,
                        tuple(left),
                        tuple(right),
                    )
                )
    return out


class _Parser:
    """expr := term (('+'|'-') term)*;  term := unary (('*'|'/'|implicit) unary)*;
    unary := ('-'|'+') unary | power;  power := atom (('^' unary) | '²' | '³')?;
    atom := number | variable | '(' expr ')' | '{' expr '}' | \\frac atom atom"""

    def __init__(self, tokens: tuple[Token, ...] | list[Token]) -> None:
        if len(tokens) > MAX_SIDE_TOKENS:
            raise Unparseable(f"more than {MAX_SIDE_TOKENS} tokens")
        self.tokens = list(tokens)
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def op(self) -> str | None:
        t = self.peek()
        return _OPS.get(t.text, t.text) if t is not None and t.kind == "op" else None

    def take(self) -> Token:
        t = self.peek()
        if t is None:
            raise Unparseable("unexpected end")
        self.pos += 1
        return t

    def parse(self) -> Any:
        value = self.expr()
        if self.peek() is not None:
            raise Unparseable(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return value

    def expr(self) -> Any:
        value = self.term()
        while self.op() in ("+", "-"):
            sign = self.op()
            self.take()
            rhs = self.term()
            value = value + rhs if sign == "+" else value - rhs
        return value

    def term(self) -> Any:
        value = self.unary()
        while True:
            t = self.peek()
            if self.op() in ("*", "/"):
                sign = self.op()
                self.take()
                rhs = self.unary()
                if sign == "/" and rhs == 0:
                    raise Unparseable("division by zero")
                value = value * rhs if sign == "*" else value / rhs
            elif t is not None and t.kind in ("var", "lp", "frac"):  # implicit: 3x, 2(x + 1), (a)(b)
                value = value * self.power()
            else:
                return value

    def unary(self) -> Any:
        if self.op() in ("-", "+"):
            sign = self.op()
            self.take()
            value = self.unary()
            return -value if sign == "-" else value
        return self.power()

    def power(self) -> Any:
        base = self.atom()
        t = self.peek()
        if t is not None and t.kind == "sup":
            self.take()
            return _pow(base, sympy.Integer(2 if t.text == "²" else 3))
        if self.op() == "^":
            self.take()
            return _pow(base, self.unary())
        return base

    def atom(self) -> Any:
        t = self.take()
        if t.kind == "num":
            digits = t.text.replace(",", "")
            if len(digits) > MAX_DIGITS:
                raise Unparseable("number too long")
            return sympy.Rational(digits)
        if t.kind == "var":
            return sympy.Symbol(t.text)
        if t.kind == "frac":
            numerator = self.atom()
            denominator = self.atom()
            if denominator == 0:
                raise Unparseable("division by zero")
            return numerator / denominator
        if t.kind == "lp":
            value = self.expr()
            if self.take().kind != "rp":
                raise Unparseable("unbalanced parentheses")
            return value
        raise Unparseable(f"unexpected {t.text!r}")


def _pow(base: Any, exponent: Any) -> Any:
    """base ** exponent within the size bounds (numeric exponents only)."""
    if not exponent.is_Rational:
        raise Unparseable("symbolic exponent")
    limit = MAX_EXPONENT if base.is_number else MAX_SYMBOLIC_EXPONENT
    if abs(exponent) > limit:
        raise Unparseable("exponent too large")
    if base.is_Rational and base != 0:
        digits = abs(float(exponent)) * max(len(str(abs(base.p))), len(str(base.q)))
        if digits > MAX_RESULT_DIGITS:
            raise Unparseable("power too large")
    if base == 0 and exponent < 0:
        raise Unparseable("division by zero")
    return base**exponent


def parse_side(tokens: tuple[Token, ...] | list[Token]) -> Any:
    """Tokens of one side -> a sympy expression. Raises Unparseable."""
    value = _Parser(tokens).parse()
    if len(value.free_symbols) > MAX_SYMBOLS:
        raise Unparseable(f"more than {MAX_SYMBOLS} variables")
    return value


def decimal_places(tokens: tuple[Token, ...] | list[Token]) -> int | None:
    """Fewest decimal places of the decimal literals among tokens (None when there is none)."""
    places = [len(t.text.split(".")[1]) for t in tokens if t.kind == "num" and "." in t.text]
    return min(places) if places else None
