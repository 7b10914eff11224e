"""Answer extraction and number comparison: pure string functions shared by the built-in rewards.

    extract_answer("Some work.\\n**Answer:** 42")  -> "42"   (last "Answer: X", else last \\boxed{X})
    lenient_answer("So the total is\\n42")         -> "42"   (else a short last line, else the last number)
    numbers_equal("1,000", "1000.0")               -> True   (None when either side is not a number)
    canonical_answer("**1,000.**")                  -> "1000" (the form maj@k votes in)

Nothing here imports torch or a math library; rewards.builtin adds math-verify on top.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# "Answer: 5", "**Answer:** 5", "**Answer: 5**", "Final answer: 5". Group 1 is the rest of the line.
_ANSWER = re.compile(r"\banswer\b[ \t]*\**[ \t]*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|[-+]?\.\d+")
# Characters that wrap an answer in markdown but are never part of it.
_WRAPPERS = "*_` \t"
_MAX_LAST_LINE_CHARS = 40
"""lenient_answer only trusts a bare last line this short; longer lines are prose, not an answer."""


def _strip_markup(text: str) -> str:
    """Remove markdown emphasis, a trailing period and an enclosing \\boxed{} from an extracted answer."""
    text = text.strip().strip(_WRAPPERS).strip()
    boxed = _last_boxed(text)
    if boxed is not None and text.startswith("\\"):
        text = boxed.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    return text.strip(_WRAPPERS)


def _balanced(text: str, start: int) -> str | None:
    """Content of the brace group whose '{' is at text[start-1], or None when it never closes."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} with balanced braces (an unclosed one is skipped)."""
    for match in reversed(list(_BOXED.finditer(text))):
        content = _balanced(text, match.end())
        if content is not None:
            return content
    return None


def _next_nonempty_line(text: str, pos: int) -> str:
    for line in text[pos:].splitlines():
        if line.strip(_WRAPPERS):
            return line
    return ""


def extract_answer(text: str) -> str | None:
    """The last "Answer: X" (any case, markdown allowed), else the last \\boxed{X}, else None.

    "Answer:" alone on a line takes the next non-empty line. Markdown emphasis, an enclosing \\boxed{}
    and a trailing period are removed from X.
    """
    for match in reversed(list(_ANSWER.finditer(text))):
        rest = match.group(1)
        if not rest.strip(_WRAPPERS):
            rest = _next_nonempty_line(text, match.end())
        answer = _strip_markup(rest)
        if answer:
            return answer
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return _strip_markup(boxed)
    return None


def last_number(text: str) -> str | None:
    """The last number written in the text ("1,000", "-3", "2.5", "1/2"), or None."""
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def lenient_answer(text: str) -> str | None:
    """extract_answer, else the last non-empty line when it is short, else the last number, else None."""
    answer = extract_answer(text)
    if answer is not None:
        return answer
    lines = [line for line in text.splitlines() if line.strip(_WRAPPERS)]
    if lines:
        last = _strip_markup(lines[-1])
        if last and len(last) <= _MAX_LAST_LINE_CHARS:
            return last
    return last_number(text)


def _number_literal(text: str) -> str | None:
    """'$1,000.' -> '1,000': the number with currency, math delimiters and a trailing period removed."""
    text = text.strip().strip(_WRAPPERS)
    if len(text) >= 2 and text[0] == text[-1] == "$":
        text = text[1:-1].strip()  # LaTeX math delimiters: $5$
    text = text.rstrip(".").strip()
    text = text.replace("\\$", "$").lstrip("$").strip()
    return text if _NUMBER.fullmatch(text) else None


def parse_number(text: str) -> Fraction | None:
    """'1,000' -> 1000, '$5' -> 5, '-3.' -> -3, '1/2' -> 1/2, '2.50' -> 5/2; None when text is not one number."""
    literal = _number_literal(text)
    if literal is None:
        return None
    try:
        return Fraction(literal.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def numbers_equal(a: str, b: str, rel_tol: float = 1e-6) -> bool | None:
    """Whether two strings are the same number; None when either is not a number.

    Integers compare exactly (so 1000000 != 1000001); anything with a decimal point or a fraction compares
    with a relative tolerance, so 0.333333 == 1/3.
    """
    x, y = parse_number(a), parse_number(b)
    if x is None or y is None:
        return None
    if x == y:
        return True
    literals = (_number_literal(a) or "") + (_number_literal(b) or "")
    if "." not in literals and "/" not in literals:
        return False  # two integers
    return math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=1e-12)


def normalize_text(text: str) -> str:
    """Case-, space- and markup-insensitive form for exact string comparison of answers."""
    text = _strip_markup(text).lower()
    if len(text) >= 2 and text[0] == text[-1] == "$":
        text = text[1:-1]
    text = text.replace("\\text{", "{").replace("{", "").replace("}", "")
    return " ".join(text.split())


def final_answer(text: str, lenient: bool = True) -> str | None:
    """The one answer a completion gives (what maj@k votes with), always a candidate the `correct` reward tries:
    extract_answer; else, when lenient, the last number when the short last line holds one ("1 + 2 = 3" -> "3"),
    else that line ("Paris"), else the last number written; else None."""
    answer = extract_answer(text)
    if answer is not None or not lenient:
        return answer
    answer = lenient_answer(text)
    return None if answer is None else last_number(answer) or answer


def canonical_answer(answer: str | None) -> str | None:
    """The form answers are compared in when voting (maj@k): a number becomes its exact value ('1,000',
    '1000.0', '$1000' -> '1000'; '0.5', '1/2' -> '1/2'), anything else its normalize_text form; None for a
    missing or empty answer."""
    if answer is None:
        return None
    number = parse_number(answer)
    if number is not None:
        return str(number)
    return normalize_text(answer) or None
