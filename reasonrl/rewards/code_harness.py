"""Unit-test harness that runs inside the sandbox for the code_tests reward (standard library only).

The sandbox's working directory holds solution.py (the model's code), tests.json ({"tests": ...,
"test_timeout_s": ...}) and this file. stdin carries one line, a random nonce. The harness:

    1. prints "<nonce> total <n>" before any untrusted code runs,
    2. execs solution.py as module "solution" (so an `if __name__ == "__main__":` demo does not run),
    3. runs the setup statements, then each test with its own SIGALRM deadline,
    4. prints "<nonce> <i> <1|0> <reason>" per test on a private copy of stdout.

Only lines with the nonce count, so a solution that prints "all passed" or calls exit() gains nothing; a
test that never reports counts as failed. Limit: the solution shares this process and could, with effort,
find the nonce in memory; the sandbox bounds what such a solution can do, not whether it can cheat.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import sys
from typing import Any


def split_tests(tests: str | list[str]) -> tuple[list[str], list[str]]:
    """(setup snippets, test snippets). A list is one test per item; a source string gives one test per
    top-level assert and runs its other statements (imports, helpers) first, as setup."""
    if not isinstance(tests, str):
        return [], [str(t) for t in tests]
    setup: list[str] = []
    checks: list[str] = []
    for node in ast.parse(tests).body:
        segment = ast.get_source_segment(tests, node) or ""
        (checks if isinstance(node, ast.Assert) else setup).append(segment)
    return setup, checks


class TestTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that `except Exception` in the solution cannot swallow it."""


def _alarm(signum: int, frame: Any) -> None:
    raise TestTimeout("test timed out")


def _run(code: str, name: str, namespace: dict[str, Any], timeout_s: float) -> str | None:
    """Exec code with a deadline; None when it ran cleanly, else a short reason."""
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        exec(compile(code, name, "exec"), namespace)
        return None
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the solution must not end the harness
        return f"{type(e).__name__}: {e}"[:200]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> None:
    nonce = sys.stdin.readline().strip()
    report = os.fdopen(os.dup(1), "w", buffering=1)
    with open("tests.json") as f:
        spec = json.load(f)
    setup, checks = split_tests(spec["tests"])
    timeout_s = float(spec["test_timeout_s"])
    report.write(f"{nonce} total {len(checks)}\n")
    signal.signal(signal.SIGALRM, _alarm)
    namespace: dict[str, Any] = {"__name__": "solution"}
    with open("solution.py") as f:
        source = f.read()
    failure = _run(source, "solution.py", namespace, timeout_s)
    for i, snippet in enumerate(setup):
        failure = failure or _run(snippet, f"<setup {i}>", namespace, timeout_s)
    for i, check in enumerate(checks):
        reason = failure or _run(check, f"<test {i}>", namespace, timeout_s)
        report.write(f"{nonce} {i} {int(reason is None)} {json.dumps(reason or '')}\n")
    report.flush()
    os._exit(0)  # skip interpreter teardown: atexit handlers the solution registered never run


if __name__ == "__main__":
    main()
