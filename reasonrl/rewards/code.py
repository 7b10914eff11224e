"""code_tests: run the model's code against the example's unit tests in the sandbox; partial credit.

    reward = (tests passed) / (tests)       0.0 when there is no code block; None when the example has no tests

The code is the last ```python fenced block of the completion (else the last unlabelled ``` block). The
tests are example.metadata["tests"]: a list of snippets (one test each, e.g. "assert add(1, 2) == 3") or one
source string (each top-level assert is a test; other statements run first). Every call gets a fresh
sandbox (reasonrl/sandbox.py: no network, read-only filesystem, CPU/memory/file/process limits, a
wall-clock timeout, nothing left running) with the harness in rewards/code_harness.py, run by `python -I -S`:
the solution can import the standard library only.

Keep options.timeout_s below rewards.timeout_s (the worker's own deadline), or a slow solution becomes a
reward error instead of a partial score.
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasonrl.rewards import REWARDS
from reasonrl.rewards.code_harness import split_tests
from reasonrl.sandbox import Limits, run

if TYPE_CHECKING:
    from reasonrl.types import Example

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}
_HARNESS = Path(__file__).with_name("code_harness.py")


def extract_code(completion: str) -> str | None:
    """The last ```python block (or, when there is none, the last unlabelled ``` block); None without one."""
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(completion)]
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == ""):
        chosen = [code for tag, code in blocks if wanted(tag)]
        if chosen:
            return chosen[-1]
    return None


@dataclass(frozen=True)
class TestReport:
    passed: int
    total: int
    results: list[tuple[bool, str]]
    """(passed, reason) per test, in order; a test that never reported counts as failed."""
    timed_out: bool
    returncode: int

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


def _parse_report(stdout: str, nonce: str, total: int) -> list[tuple[bool, str]]:
    results: dict[int, tuple[bool, str]] = {}
    for line in stdout.splitlines():
        fields = line.split(" ", 3)
        if len(fields) == 4 and fields[0] == nonce and fields[1].isdigit() and fields[2] in ("0", "1"):
            index = int(fields[1])
            if index < total and index not in results:
                results[index] = (fields[2] == "1", json.loads(fields[3]))
    return [results.get(i, (False, "no result (killed or timed out)")) for i in range(total)]


def run_tests(code: str, tests: str | list[str], limits: Limits = Limits(), test_timeout_s: float = 3.0,
              mode: str | None = None) -> TestReport:
    """Run `tests` against `code` in a fresh sandbox. Raises ValueError when the tests do not parse."""
    _, checks = split_tests(tests)
    nonce = secrets.token_hex(16)
    files = {"solution.py": code, "harness.py": _HARNESS.read_text(),
             "tests.json": json.dumps({"tests": tests, "test_timeout_s": test_timeout_s})}
    result = run(["{python}", "-I", "-S", "harness.py"], files, limits, stdin=f"{nonce}\n".encode(), mode=mode)
    results = _parse_report(result.stdout, nonce, len(checks))
    return TestReport(passed=sum(ok for ok, _ in results), total=len(checks), results=results,
                      timed_out=result.timed_out, returncode=result.returncode)


def check_options(timeout_s: float = 5.0, test_timeout_s: float = 3.0, memory_mb: int = 512,
                  max_processes: int = 16) -> None:
    """Called when the reward composer is built: bad option values fail then, not at every call."""
    Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes)
    if not test_timeout_s > 0:
        raise ValueError(f"code_tests test_timeout_s must be > 0, got {test_timeout_s}")


@REWARDS.register("code_tests")
def code_tests(completion: str, example: Example, timeout_s: float = 5.0, test_timeout_s: float = 3.0,
               memory_mb: int = 512, max_processes: int = 16) -> float | None:
    """Fraction of example.metadata["tests"] that the completion's last Python block passes.

    timeout_s: wall clock for the whole run; test_timeout_s: per test; memory_mb: address space per process.
    """
    tests: Any = example.metadata.get("tests")
    if tests is None:
        return None
    code = extract_code(completion)
    if code is None:
        return 0.0
    limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes)
    return run_tests(code, tests, limits, test_timeout_s).fraction


code_tests.check_options = check_options  # type: ignore[attr-defined]
