"""The worker side of the reward pool (isolation.py): resolving function references, checking what a reward
returned, and the loop a worker process serves. A worker loads this file by path, without importing reasonrl
(whose built-in rewards import math-verify and reasoning-gym), so it imports nothing of reasonrl at module level.

function_ref is a registry name ("correct"), "package.module:function" or "path/to/file.py:function".
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import pickle
import signal
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_BOOT = (
    "import importlib.util as u, sys; s = u.spec_from_file_location('reasonrl_reward_worker', sys.argv[2]); "
    "m = sys.modules[s.name] = u.module_from_spec(s); s.loader.exec_module(m); "
    "m.worker_main(int(sys.argv[1]), int(sys.argv[3]))"
)
_FILE_MODULE_PREFIX = "reasonrl_user_"
"""Module names of reward files loaded by path: reasonrl_user_<stem>_<hash of the path>."""


@dataclass(frozen=True)
class Call:
    """One function call for a worker: function_ref(**kwargs). kwargs must be picklable."""

    function_ref: str
    kwargs: dict[str, Any]


GAVE_UP = "not run: the pool gave up"
"""The error of calls a WorkerPool did not run because max_timeouts_in_row calls in a row timed out."""


@dataclass(frozen=True)
class Outcome:
    """What a call gave: value (a float, or None for 'not applicable') or an error message."""

    value: float | None
    error: str | None = None
    steps: tuple[tuple[int, float], ...] = ()
    """(end offset in the completion, value) per step, when the reward returned StepScores."""


# ---------------------------------------------------------------------------------------------------------
# Resolving function references (runs in the parent for validation and in each worker).


def is_file_ref(ref: str) -> bool:
    """'dir/file.py:fn' and 'file.py:fn' name a file; 'pkg.mod:fn' names a module."""
    target = ref.rpartition(":")[0]
    return target.endswith(".py") or "/" in target or os.sep in target


def normalize_ref(ref: str) -> str:
    """Make a file reference absolute, so workers started later (or elsewhere) find the same file."""
    if ":" in ref and is_file_ref(ref):
        path, _, name = ref.rpartition(":")
        return f"{Path(path).expanduser().resolve()}:{name}"
    return ref


def function_ref(fn: Callable[..., Any]) -> str:
    """The ref under which a worker finds fn: 'module:function', or 'path/file.py:function' for a module that
    resolve_function loaded from a file. Raises ValueError when a fresh interpreter could not find it."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module is None or module == "__main__" or "." in qualname or "<" in qualname:
        raise ValueError(
            f"{fn!r} is defined in {module or 'no module'}; reward workers are fresh processes "
            "and can only import module-level functions of a module or file; move it there"
        )
    path = getattr(sys.modules.get(module), "__file__", None)
    if module.startswith(_FILE_MODULE_PREFIX) and path:
        return f"{path}:{qualname}"
    return f"{module}:{qualname}"


def _load_file(path: str) -> types.ModuleType:
    resolved = Path(path).expanduser().resolve()
    # One stable module name per file, registered in sys.modules so its objects pickle by reference.
    name = f"{_FILE_MODULE_PREFIX}{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolve_function(ref: str) -> Callable[..., Any]:
    """Registry name, 'module:function' or 'path/file.py:function' -> the callable.

    Raises ValueError naming the reference when the module or file cannot be loaded or lacks the function;
    an unknown registry name raises the registry's KeyError (it lists the known names).
    """
    if ":" not in ref:
        from reasonrl.rewards import REWARDS  # lazy: this module is imported by reasonrl.rewards itself

        return REWARDS.get(ref)
    target, _, name = ref.rpartition(":")
    if is_file_ref(ref) and not Path(target).expanduser().is_file():
        raise ValueError(
            f"reward file {target!r} does not exist (resolved to "
            f"{str(Path(target).expanduser().resolve())!r}); check the path in {ref!r}"
        )
    try:
        module = _load_file(target) if is_file_ref(ref) else importlib.import_module(target)
    except Exception as e:
        raise ValueError(f"cannot load {target!r} for reward {ref!r}: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(
            f"{target!r} has no function {name!r} (reward {ref!r}); it defines: "
            f"{', '.join(public) or 'no public callables'}"
        )
    if not callable(fn):
        raise ValueError(f"{ref!r} is a {type(fn).__name__}, not a function")
    return fn


# ---------------------------------------------------------------------------------------------------------
# Worker side.


def _import_example_type() -> None:
    """Import reasonrl.types (unpickling an Example needs it); it is torch-free at import time."""
    importlib.import_module("reasonrl.types")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the parent dies, so a worker stuck in a loop is never orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def check_value(value: Any, name: str = "reward") -> float | None:
    """A reward's return value -> float | None. Raises TypeError/ValueError naming `name` otherwise."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float)):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} returned {value}; return a finite number, or None for 'not applicable'")
        return value
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    raise TypeError(f"{name} returned {kind} {value!r:.80}; return a float, int, bool or None")


def _error_text(e: BaseException) -> str:
    """'ValueError: bad input (at my_reward.py:12)': the exception and the innermost frame that raised it."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def check_result(value: Any, name: str = "reward") -> tuple[float | None, tuple[tuple[int, float], ...]]:
    """A reward's return value -> (value, steps). An object with .total and .steps (StepScores) gives steps:
    (end offset, value) pairs. Raises TypeError/ValueError naming `name` for anything else."""
    raw_steps = getattr(value, "steps", None)
    if raw_steps is None or not hasattr(value, "total"):
        return check_value(value, name), ()
    total = check_value(value.total, f"{name} (total)")
    steps = []
    for end, step_value in raw_steps:
        if not isinstance(end, int) or end < 0:
            raise ValueError(f"{name} gave step end {end!r}; use a character offset (int >= 0)")
        steps.append((end, check_value(step_value, f"{name} (step ending at {end})")))
    if total is None and steps:
        raise ValueError(f"{name} returned steps with total None; give a total")
    return total, tuple((end, float(v)) for end, v in steps if v is not None)


def _run_one(
    cache: dict[str, Callable[..., Any]], ref: str, payload: bytes
) -> tuple[float | None, str | None, tuple[tuple[int, float], ...]]:
    try:
        if ref not in cache:
            cache[ref] = resolve_function(ref)
        value = cache[ref](**pickle.loads(payload))
    except MemoryError:
        return None, "MemoryError: the reward passed its worker's memory limit (rewards.memory_mb)", ()
    except Exception as e:  # the reward's own error, reported to the parent; the worker keeps serving
        return None, _error_text(e), ()
    try:
        total, steps = check_result(value, f"reward {ref!r}")
        return total, None, steps
    except (TypeError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}", ()


def worker_main(fd: int, memory_mb: int = 0) -> None:
    """Entry point of a worker process: serve (call_id, function_ref, pickled kwargs) until the pipe closes.
    memory_mb > 0 limits its data segment after start-up; after a MemoryError it exits (the parent replaces it:
    a worker that ran out of memory may be left in any state)."""
    _die_with_parent()
    conn = Connection(fd)
    cache: dict[str, Callable[..., Any]] = {}
    preload: list[str] = conn.recv()
    try:
        _import_example_type()
        for ref in preload:
            cache[ref] = resolve_function(ref)
        if memory_mb > 0:
            import resource

            resource.setrlimit(resource.RLIMIT_DATA, (memory_mb * 2**20, memory_mb * 2**20))
        conn.send(("ready", None))
    except Exception as e:
        conn.send(("ready", _error_text(e)))
        return
    while True:
        try:
            call_id, ref, payload = conn.recv()
        except (EOFError, OSError):
            return
        answer = _run_one(cache, ref, payload)
        conn.send((call_id, *answer))
        if (answer[1] or "").startswith("MemoryError"):
            return


# ---------------------------------------------------------------------------------------------------------
# Parent side.
