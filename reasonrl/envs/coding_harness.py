"""Test runner of the coding environment; runs inside the sandbox (standard library only).

The sandbox's working directory holds the repository, this file and _reasonrl_tests.json:
{"tests": [[file, class, method], ...], "test_timeout_s": float}. stdin carries one line, a random nonce.
For each test, in order, the runner loads its file as a module (from that path, so a package or module of
the same name elsewhere in the repository cannot stand in for it) and runs the one test method under its
own SIGALRM deadline. It prints a readable line per test ("test_x.Cls.test_y ... ok" / FAIL / ERROR /
TIMEOUT / SKIPPED, with the end of the traceback) and, on a private copy of stdout, "<nonce> <i> <1|0>".

Only nonce lines count, so printing "OK", exiting early or skipping a test gains nothing, and a test that
never reports counts as failed. A test passes only when it ran, without failure, error or skip, and with
unittest.TestCase's and TestResult's methods as they were before the repository's code was imported. Unlike
rewards/code_harness.py (whose tests split into probes and a separate judge), a repository's unittest suite
runs in this one process: code here could, with effort, find the nonce in memory; the sandbox bounds what such
code can do, not whether it can cheat.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import signal
import sys
import traceback
import unittest
from typing import Any

SPEC_FILE = "_reasonrl_tests.json"
TRACEBACK_LINES = 12
_CASE, _RESULT = unittest.TestCase, unittest.TestResult  # bound before any code under test runs


class TestTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that `except Exception` in the code under test cannot swallow it."""


def find_tests(source: str, path: str) -> list[list[str]]:
    """[path, class, method] of every test_* method of the top-level classes of a unittest file (used by the
    host to list the tests; raises SyntaxError when the file does not parse)."""
    tests = []
    for node in ast.parse(source, filename=path).body:
        if isinstance(node, ast.ClassDef):
            tests += [
                [path, node.name, item.name]
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
            ]
    return tests


def _alarm(signum: int, frame: Any) -> None:
    raise TestTimeout("the test took too long (time limit per test)")


def _load(path: str, modules: dict[str, Any]) -> Any:
    if path not in modules:
        name = os.path.splitext(path)[0].replace("/", ".")
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.getcwd(), path))
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        modules[path] = module
    return modules[path]


def _tail(text: str) -> str:
    """The innermost frame of a traceback outside this runner, and what follows, in TRACEBACK_LINES lines."""
    lines = text.rstrip().splitlines()
    own = os.path.basename(__file__)
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "') and own not in line]
    return "\n".join(lines[frames[-1] if frames else 0 :][:TRACEBACK_LINES])


def run_one(path: str, cls: str, method: str, modules: dict[str, Any], timeout_s: float) -> tuple[str, str]:
    """(verdict, detail): verdict is ok, FAIL, ERROR, TIMEOUT or SKIPPED."""
    result = _RESULT()
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        test_class = getattr(_load(path, modules), cls)
        if not (isinstance(test_class, type) and issubclass(test_class, _CASE)):
            return "ERROR", f"{cls} is not a unittest.TestCase"
        test_class(method).run(result)
    except BaseException as e:  # SystemExit too: the code under test must not end the runner
        kind = "TIMEOUT" if isinstance(e, TestTimeout) else "ERROR"
        return kind, _tail("".join(traceback.format_exception(type(e), e, e.__traceback__)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    for kind, found in (("FAIL", result.failures), ("ERROR", result.errors)):
        if found:
            detail = _tail(found[0][1])
            return ("TIMEOUT" if "TestTimeout" in detail else kind), detail
    if result.skipped:
        return "SKIPPED", str(result.skipped[0][1])
    if result.testsRun != 1:
        return "ERROR", f"{method} did not run"
    return "ok", ""


def main() -> None:
    nonce = sys.stdin.readline().strip()
    report = os.fdopen(os.dup(1), "w", buffering=1)
    with open(SPEC_FILE) as f:
        spec = json.load(f)
    pristine = [dict(vars(_CASE)), dict(vars(_RESULT))]
    sys.path.insert(0, os.getcwd())
    signal.signal(signal.SIGALRM, _alarm)
    modules: dict[str, Any] = {}
    passed = 0
    for i, (path, cls, method) in enumerate(spec["tests"]):
        verdict, detail = run_one(path, cls, method, modules, float(spec["test_timeout_s"]))
        if verdict == "ok" and [dict(vars(_CASE)), dict(vars(_RESULT))] != pristine:
            verdict, detail = "ERROR", "unittest was modified by the code under test"
        passed += verdict == "ok"
        name = f"{os.path.splitext(path)[0].replace('/', '.')}.{cls}.{method}"
        print(f"{name} ... {verdict}" + (f"\n{detail}\n" if detail else ""), flush=True)
        report.write(f"{nonce} {i} {int(verdict == 'ok')}\n")
    print(f"{passed} of {len(spec['tests'])} tests passed", flush=True)
    report.flush()
    os._exit(0)  # skip interpreter teardown: atexit handlers of the code under test never run


if __name__ == "__main__":
    main()
