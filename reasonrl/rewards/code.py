"""code_tests: run the model's code against the example's unit tests in the sandbox; partial credit.

    reward = (tests passed) / (tests)       0.0 when there is no code block; None when the example has no tests

The code is the last ```python fenced block of the completion (else the last unlabelled ``` block). The
tests are example.metadata["tests"]: a list of snippets (one test each, e.g. "assert add(1, 2) == 3") or one
source string (each top-level assert is a test; other statements run first). Every call gets a fresh
sandbox (reasonrl/sandbox.py: no network, read-only filesystem, CPU/memory/file/process limits, a
wall-clock timeout, nothing left running) with the harness in rewards/code_harness.py, run by `python -I -S`:
the solution can import the standard library only. The tests are split (rewards/code_plan.py): the solution's
sandbox evaluates the probes, the verdicts are made where the solution cannot reach; a tampering attempt that
the harness reports scores 0 and is logged.

Keep options.timeout_s below rewards.timeout_s (the worker's own deadline), or a slow solution becomes a
reward error instead of a partial score.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from reasonrl.rewards import REWARDS
from reasonrl.rewards.code_harness import split_tests
from reasonrl.rewards.code_plan import plan_tests
from reasonrl.sandbox import Limits, run

if TYPE_CHECKING:
    from reasonrl.types import Example

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}
_HARNESS = Path(__file__).with_name("code_harness.py")
_WHOLE_LOGGED: set[str] = set()
logger = logging.getLogger(__name__)


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
    attempts: tuple[str, ...] = ()
    """What the solution tried besides computing (reading the tests, writing files, sockets, processes, exit(),
    a value with its own __eq__); code_tests scores any attempt 0."""
    whole: bool = False
    """The tests could not be split into probes and ran in the solution's process (code_plan.py)."""

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


def _nonce_lines(stdout: str, nonce: str) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """(index, rest) of the report lines that carry the nonce, and the attempts reported (deduplicated)."""
    lines, attempts = [], []
    for line in stdout.splitlines():
        fields = line.split(" ", 2)
        if len(fields) == 3 and fields[0] == nonce:
            if fields[1] == "attempt":
                with contextlib.suppress(ValueError):
                    attempts.append(str(json.loads(fields[2])))
            else:
                lines.append((fields[1], fields[2]))
    return lines, tuple(dict.fromkeys(attempts))


def _parse_verdicts(lines: list[tuple[str, str]], total: int) -> list[tuple[bool, str]]:
    results: dict[int, tuple[bool, str]] = {}
    for index, rest in lines:
        flag, _, reason = rest.partition(" ")
        if index.isdigit() and int(index) < total and int(index) not in results and flag in ("0", "1"):
            with contextlib.suppress(ValueError):
                results[int(index)] = (flag == "1", json.loads(reason))
    return [results.get(i, (False, "no result (killed or timed out)")) for i in range(total)]


def _run_whole(
    code: str, tests: str | list[str], total: int, limits: Limits, test_timeout_s: float, mode: str | None
) -> TestReport:
    nonce = secrets.token_hex(16)
    files = {
        "solution.py": code,
        "harness.py": _HARNESS.read_text(),
        "tests.json": json.dumps({"tests": tests, "test_timeout_s": test_timeout_s}),
    }
    result = run(["{python}", "-I", "-S", "harness.py", "whole"], files, limits, stdin=f"{nonce}\n".encode(), mode=mode)
    lines, attempts = _nonce_lines(result.stdout, nonce)
    results = _parse_verdicts(lines, total)
    return TestReport(
        sum(ok for ok, _ in results), total, results, result.timed_out, result.returncode, attempts, whole=True
    )


def run_tests(
    code: str,
    tests: str | list[str],
    limits: Limits | None = None,
    test_timeout_s: float = 3.0,
    mode: str | None = None,
) -> TestReport:
    """Run `tests` against `code`: the probes in one fresh sandbox, the judge in another (code_plan.py);
    tests that cannot be split run whole in one. Raises ValueError when the tests do not parse."""
    limits = limits or Limits()
    total = len(split_tests(tests)[1])
    plan = plan_tests(tests)
    if plan is None:
        return _run_whole(code, tests, total, limits, test_timeout_s, mode)
    nonce = secrets.token_hex(16)
    files = {
        "solution.py": code,
        "harness.py": _HARNESS.read_text(),
        "probes.json": json.dumps({"probes": plan.probes, "timeout_s": test_timeout_s}),
    }
    probed = run(["{python}", "-I", "-S", "harness.py", "probe"], files, limits, stdin=f"{nonce}\n".encode(), mode=mode)
    lines, attempts = _nonce_lines(probed.stdout, nonce)
    values: dict[int, dict] = {}
    for index, rest in lines:
        with contextlib.suppress(ValueError):
            if index.isdigit() and int(index) < len(plan.probes):
                values.setdefault(int(index), json.loads(rest))
    answers = [values.get(k, {"error": f"{p}: no result (killed or timed out)"}) for k, p in enumerate(plan.probes)]
    if plan.local:
        results = plan.judge(answers)
    else:
        judge = {
            "setup": plan.setup,
            "checks": plan.checks,
            "uses": plan.uses,
            "values": answers,
            "test_timeout_s": test_timeout_s,
        }
        judged = run(
            ["{python}", "-I", "-S", "harness.py", "judge"],
            {"harness.py": _HARNESS.read_text(), "judge.json": json.dumps(judge)},
            limits,
            mode=mode,
        )
        results = _parse_verdicts(
            [cast("tuple[str, str]", tuple(line.split(" ", 1))) for line in judged.stdout.splitlines() if " " in line],
            total,
        )
    return TestReport(sum(ok for ok, _ in results), total, results, probed.timed_out, probed.returncode, attempts)


def check_options(
    timeout_s: float = 5.0, test_timeout_s: float = 3.0, memory_mb: int = 512, max_processes: int = 16
) -> None:
    """Called when the reward composer is built: bad option values fail then, not at every call."""
    Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes)
    if not test_timeout_s > 0:
        raise ValueError(f"code_tests test_timeout_s must be > 0, got {test_timeout_s}")


@REWARDS.register("code_tests")
def code_tests(
    completion: str,
    example: Example,
    timeout_s: float = 5.0,
    test_timeout_s: float = 3.0,
    memory_mb: int = 512,
    max_processes: int = 16,
) -> float | None:
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
    report = run_tests(code, tests, limits, test_timeout_s)
    if report.whole and example.id not in _WHOLE_LOGGED:
        _WHOLE_LOGGED.add(example.id)
        logger.warning(
            "code_tests: the tests of example %r cannot be split into probes (a comprehension, a lambda "
            "or setup that uses the solution), so they run in the solution's process, where a solution "
            "could fake a pass",
            example.id,
        )
    if report.attempts:
        logger.warning(
            "code_tests: tampering attempt on example %r, scored 0: %s", example.id, "; ".join(report.attempts)
        )
        return 0.0
    return report.fraction


code_tests.check_options = check_options  # type: ignore[attr-defined]
