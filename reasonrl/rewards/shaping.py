"""length: overlong penalty (DAPO, arXiv 2503.14476) and target-length shaping.

    overlong (max_length=L_max, cache=L_cache):  0                               if n <= L_max - L_cache
                                                  ((L_max - L_cache) - n) / L_cache if n <= L_max
                                                  -1                              otherwise
    target   (target=T, tolerance=w, default T):  max(0, 1 - |n - T| / w)     (1 at the target, 0 far from it)

n is the completion's length in `unit`: "chars", "words", or "tokens" (counted by the `tokenizer` given as a
tokenizer.json file or a directory holding one, with the torch-free `tokenizers` library; counts of the
decoded text can differ by a token or two from what the policy sampled). With both settings the reward is
their sum. Pair overlong with a correctness term: on its own it only rewards stopping early.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrl.rewards import REWARDS

if TYPE_CHECKING:
    from reasonrl.types import Example

UNITS = ("chars", "words", "tokens")


def overlong_penalty(n: int, max_length: int, cache: int) -> float:
    """DAPO's soft overlong punishment: 0, then linear down to -1 over the last `cache` units, then -1."""
    soft_start = max_length - cache
    if n <= soft_start:
        return 0.0
    if n <= max_length:
        return (soft_start - n) / cache
    return -1.0


def target_shaping(n: int, target: int, tolerance: float) -> float:
    """1 at the target length, falling linearly to 0 at `tolerance` units away."""
    return max(0.0, 1.0 - abs(n - target) / tolerance)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    file = Path(path).expanduser()
    return Tokenizer.from_file(str(file / "tokenizer.json" if file.is_dir() else file))


def measure(text: str, unit: str, tokenizer: str | None = None) -> int:
    if unit == "chars":
        return len(text)
    if unit == "words":
        return len(text.split())
    return len(_tokenizer(str(tokenizer)).encode(text, add_special_tokens=False).ids)


def check_options(
    unit: str = "chars",
    max_length: int | None = None,
    cache: int | None = None,
    target: int | None = None,
    tolerance: float | None = None,
    tokenizer: str | None = None,
) -> None:
    """Called when the reward composer is built: bad option values fail before training starts."""
    where = "rewards.options.length"
    if unit not in UNITS:
        raise ValueError(f"{where}.unit={unit!r} is not one of {', '.join(UNITS)}")
    if max_length is None and target is None:
        raise ValueError(
            f"{where} needs max_length (overlong penalty, with cache) and/or target (shaping), "
            "e.g. {max_length: 512, cache: 128}"
        )
    if max_length is not None and not (cache is not None and 0 < cache <= max_length):
        raise ValueError(f"{where}.cache={cache} must be set and within 1..max_length ({max_length})")
    if target is not None and not (target > 0 and (tolerance is None or tolerance > 0)):
        raise ValueError(f"{where}: target ({target}) and tolerance ({tolerance}) must be > 0")
    if unit == "tokens":
        file = Path(tokenizer).expanduser() if tokenizer else None
        if file is None or not (file.is_file() or (file / "tokenizer.json").is_file()):
            raise ValueError(
                f"{where}.unit=tokens needs tokenizer=<tokenizer.json or a directory holding one>, got {tokenizer!r}"
            )


@REWARDS.register("length")
def length(
    completion: str,
    example: Example,
    unit: str = "chars",
    max_length: int | None = None,
    cache: int | None = None,
    target: int | None = None,
    tolerance: float | None = None,
    tokenizer: str | None = None,
) -> float:
    """Overlong penalty and/or target-length shaping of the completion (see the module docstring)."""
    n = measure(completion, unit, tokenizer)
    value = 0.0
    if max_length is not None and cache is not None:
        value += overlong_penalty(n, max_length, cache)
    if target is not None:
        value += target_shaping(n, target, tolerance or target)
    return value


length.check_options = check_options  # type: ignore[attr-defined]
