"""Test harness that runs inside the sandbox for the code_tests reward (standard library only).

Three modes, `python -I -S harness.py MODE`:

    probe   the solution's process. Working directory: solution.py, probes.json (expressions such as
            "add(1, 2)", no expected values). Runs solution.py as module "solution", evaluates each probe
            under its own SIGALRM deadline and reports "<nonce> <i> <value>" on a private copy of stdout, the
            value encoded as plain data (encode: exact built-in types only, so no object with its own __eq__
            crosses). An audit hook reports attempts to read the harness's files, write files, open sockets,
            start processes or load native code as "<nonce> attempt <what>". stdin carries the nonce.
    judge   a second, fresh sandbox that never runs the solution: judge.json holds the test setup, each test
            with its probes replaced by __probe__[k], and the decoded probe values. Prints "<i> <1|0> <reason>".
    whole   the fallback for tests that cannot be split into probes (a comprehension, a lambda, setup that
            uses the solution): solution and tests in one process, "<nonce> <i> <1|0> <reason>" per test. A
            solution could fake a pass here by finding the nonce in its own process's memory; code.py logs
            which examples run this way.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
from typing import Any

_PLAIN = (type(None), bool, int, float, str, bytes, complex, list, tuple, set, frozenset, dict)
_SEQUENCES: dict[type, str] = {list: "l", tuple: "t", set: "s", frozenset: "fs"}
_COMPARISONS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__len__", "__hash__")


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


class Unencodable(TypeError):
    """A value that is not plain data (exact built-in types); `tampering` when its class defines comparisons."""

    def __init__(self, value: Any) -> None:
        kind = type(value)
        own = [
            name
            for cls in kind.__mro__
            if cls not in _PLAIN and cls is not object
            for name in _COMPARISONS
            if name in vars(cls)
        ]
        self.tampering = bool(own)
        detail = f" (its class defines {', '.join(sorted(set(own)))})" if own else ""
        super().__init__(
            f"returned a {kind.__qualname__}{detail}; tests compare plain values only (None, bool, "
            "int, float, complex, str, bytes, list, tuple, set, frozenset, dict)"
        )


def encode(value: Any, depth: int = 0) -> Any:
    """Plain data -> JSON, tagged so that decode gives back the same types (exact types: no subclasses)."""
    kind = type(value)
    if depth > 100:
        raise ValueError("returned a value nested more than 100 levels deep")
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return {"i": str(value)}
    if kind is float:
        return {"f": repr(value)}
    if kind is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind in _SEQUENCES:
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return {_SEQUENCES[kind]: [encode(v, depth + 1) for v in items]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise Unencodable(value)


def decode(data: Any) -> Any:
    if data is None or isinstance(data, (bool, str)):
        return data
    ((tag, payload),) = data.items()
    if tag == "i":
        return int(payload)
    if tag == "f":
        return float(payload)
    if tag == "c":
        return complex(float(payload[0]), float(payload[1]))
    if tag == "b":
        return bytes.fromhex(payload)
    if tag == "d":
        return {decode(k): decode(v) for k, v in payload}
    items = [decode(v) for v in payload]
    return {tag: kind for kind, tag in _SEQUENCES.items()}[tag](items)


class TestTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that `except Exception` in the solution cannot swallow it."""


def _alarm(signum: int, frame: Any) -> None:
    raise TestTimeout("test timed out")


def _run(code: str, name: str, namespace: dict[str, Any], timeout_s: float, mode: str = "exec") -> Any:
    """Exec (or eval) code with a deadline: ("ok", value) or ("error", reason)."""
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return "ok", (eval if mode == "eval" else exec)(compile(code, name, mode), namespace)
    except BaseException as e:  # SystemExit and KeyboardInterrupt too: the solution must not end the harness
        return "error", f"{type(e).__name__}: {e}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _watch(report: Any, nonce: str) -> None:
    """Report what the solution attempts beyond computing: an audit hook (it cannot be removed)."""
    cwd = os.getcwd()
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event: str, args: tuple) -> None:
        what = None
        if event == "open" and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(os.fsdecode(args[0]))
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & writes):
                what = f"writes the file {os.path.basename(path)}"
            elif os.path.dirname(path) == cwd and os.path.basename(path) != "solution.py":
                what = f"reads the harness's file {os.path.basename(path)}"
        elif event.startswith("socket."):
            what = "opens a network socket"
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"):
            what = f"starts a process ({event})"
        elif event == "ctypes.dlopen":
            what = "loads native code (ctypes)"
        if what:
            report.write(f"{nonce} attempt {json.dumps(what)}\n")

    sys.addaudithook(hook)


def _start(nonce: str) -> tuple[Any, dict[str, Any]]:
    """The private report stream and the solution's namespace, with the audit hook installed."""
    report = os.fdopen(os.dup(1), "w", buffering=1)
    sys.dont_write_bytecode = True  # an import must not look like a file write
    _watch(report, nonce)
    signal.signal(signal.SIGALRM, _alarm)
    return report, {"__name__": "solution"}


def probe_main() -> None:
    nonce = sys.stdin.readline().strip()
    with open("probes.json") as f:
        spec = json.load(f)
    with open("solution.py") as f:
        source = f.read()
    report, namespace = _start(nonce)
    harness = dict(globals())
    failed = _run(source, "solution.py", namespace, spec["timeout_s"])
    patched = sorted(k for k, v in harness.items() if globals().get(k) is not v)
    if patched:
        report.write(f"{nonce} attempt {json.dumps('patches the harness: ' + ', '.join(patched))}\n")
    for i, expression in enumerate(spec["probes"]):
        status, value = (
            failed if failed[0] == "error" else _run(expression, f"<probe {i}>", namespace, spec["timeout_s"], "eval")
        )
        if status == "error" and value.startswith("SystemExit"):
            report.write(f"{nonce} attempt {json.dumps('calls exit() from tested code')}\n")
        if status == "ok":
            try:
                value = {"value": encode(value)}
            except (Unencodable, ValueError, RecursionError) as e:
                if getattr(e, "tampering", False):
                    report.write(f"{nonce} attempt {json.dumps(f'{expression} {e}')}\n")
                value = {"error": f"{expression} {e}"}
        else:
            value = {"error": f"{expression}: {value}" if failed[0] != "error" else f"solution.py: {value}"}
        report.write(f"{nonce} {i} {json.dumps(value)}\n")
    report.flush()
    os._exit(0)  # skip interpreter teardown: atexit handlers the solution registered never run


def judge_main() -> None:
    with open("judge.json") as f:
        spec = json.load(f)
    signal.signal(signal.SIGALRM, _alarm)
    values = [decode(v["value"]) if "value" in v else None for v in spec["values"]]
    namespace: dict[str, Any] = {"__name__": "tests", "__probe__": values}
    failure = None
    for i, snippet in enumerate(spec["setup"]):
        status, reason = _run(snippet, f"<setup {i}>", namespace, spec["test_timeout_s"])
        failure = failure or (reason if status == "error" else None)
    for i, (check, uses) in enumerate(zip(spec["checks"], spec["uses"])):
        errors = [spec["values"][k]["error"] for k in uses if "error" in spec["values"][k]]
        reason = failure or (errors[0] if errors else None)
        if reason is None:
            status, result = _run(f"bool({check})", f"<test {i}>", namespace, spec["test_timeout_s"], "eval")
            reason = result if status == "error" else (None if result else "AssertionError")
        print(f"{i} {int(reason is None)} {json.dumps(reason or '')}", flush=True)


def whole_main() -> None:
    nonce = sys.stdin.readline().strip()
    with open("tests.json") as f:
        spec = json.load(f)
    setup, checks = split_tests(spec["tests"])
    timeout_s = float(spec["test_timeout_s"])
    report, namespace = _start(nonce)
    report.write(f"{nonce} total {len(checks)}\n")
    with open("solution.py") as f:
        source = f.read()
    status, failure = _run(source, "solution.py", namespace, timeout_s)
    failure = failure if status == "error" else None
    for i, snippet in enumerate(setup):
        status, reason = _run(snippet, f"<setup {i}>", namespace, timeout_s)
        failure = failure or (reason if status == "error" else None)
    for i, check in enumerate(checks):
        status, reason = ("error", failure) if failure else _run(check, f"<test {i}>", namespace, timeout_s)
        reason = reason if status == "error" else None
        report.write(f"{nonce} {i} {int(reason is None)} {json.dumps(reason or '')}\n")
    report.flush()
    os._exit(0)


if __name__ == "__main__":
    {"probe": probe_main, "judge": judge_main}.get(sys.argv[1] if len(sys.argv) > 1 else "", whole_main)()
