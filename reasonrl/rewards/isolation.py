"""A pool of worker processes that runs reward functions with a wall-clock timeout per call.

    with WorkerPool(workers=2, timeout_s=5.0) as pool:
        outcomes = pool.run([Call("correct", {"completion": text, "example": example})])
    outcomes[0].value, outcomes[0].error   # 1.0, None  |  None, "timeout after 5.0s"

Why processes: a reward can loop forever (sympy on a hostile answer), crash the interpreter or leak memory.
Each worker is a fresh interpreter (fork+exec of `python -c`, as with multiprocessing's "spawn"), so it is safe
to start from a process that has torch threads running. It never imports torch: "spawn" itself would re-import
the trainer's `__main__` (and torch with it) in every worker, so workers are started with subprocess and
talk over a socket pair with multiprocessing's Connection. A call that passes its deadline, or a worker that
dies, gets an error Outcome; the worker's process group is SIGKILLed and replaced, and the other calls go on.
No signal.alarm anywhere: the timeout is the parent's clock.

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
import subprocess
import sys
import time
import traceback
import types
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Callable

# A worker loads this file directly rather than importing reasonrl.rewards, whose built-ins import
# math-verify and reasoning-gym: a worker imports those only when a call (or preload) needs them.
_BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('reasonrl_reward_worker', sys.argv[2]); "
         "m = sys.modules[s.name] = u.module_from_spec(s); s.loader.exec_module(m); "
         "m.worker_main(int(sys.argv[1]), int(sys.argv[3]))")
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
        raise ValueError(f"{fn!r} is defined in {module or 'no module'}; reward workers are fresh processes "
                         "and can only import module-level functions of a module or file; move it there")
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
        raise ValueError(f"reward file {target!r} does not exist (resolved to "
                         f"{str(Path(target).expanduser().resolve())!r}); check the path in {ref!r}")
    try:
        module = _load_file(target) if is_file_ref(ref) else importlib.import_module(target)
    except Exception as e:
        raise ValueError(f"cannot load {target!r} for reward {ref!r}: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if fn is None:
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"{target!r} has no function {name!r} (reward {ref!r}); it defines: "
                         f"{', '.join(public) or 'no public callables'}")
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


def _run_one(cache: dict[str, Callable[..., Any]], ref: str,
             payload: bytes) -> tuple[float | None, str | None, tuple[tuple[int, float], ...]]:
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

def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group (it leads its own session), then reap it."""
    if proc.returncode is not None:
        return  # already reaped: its pid may belong to someone else by now
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _kill_all(procs: dict[int, subprocess.Popen]) -> None:
    for proc in list(procs.values()):
        _kill(proc)
    procs.clear()


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    started: float
    ready: bool = False
    call: int | None = None
    """Index (into the current run's calls) of the call this worker is running."""
    deadline: float = math.inf


class WorkerPool:
    """Persistent worker processes that run Calls concurrently, each under its own wall-clock timeout.

    Not thread-safe: call run() from one thread at a time. Workers are killed by close(), by leaving a
    `with` block, when the pool is garbage-collected, at interpreter exit, or (Linux) when the parent dies.
    """

    def __init__(self, workers: int, timeout_s: float, preload: list[str] | tuple[str, ...] = (),
                 start_timeout_s: float = 120.0, max_timeouts_in_row: int = 0, memory_mb: int = 0) -> None:
        """preload: function refs each worker imports before taking calls (not counted in any timeout).
        max_timeouts_in_row: after that many timeouts in a row of one function, run() stops waiting: the calls
        not yet answered get GAVE_UP (0: never). memory_mb: each worker's data-segment limit (RLIMIT_DATA;
        0: none); a call that passes it fails with MemoryError and its worker is replaced."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.workers = workers
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_timeouts_in_row, self.memory_mb = max_timeouts_in_row, memory_mb
        self._in_row: dict[str, int] = {}   # function ref -> its calls that timed out in a row
        self._calls: list[Call] = []
        self.preload = [normalize_ref(ref) for ref in preload]
        self._procs: dict[int, subprocess.Popen] = {}
        # Runs on close(), on garbage collection and at interpreter exit: no orphan workers.
        self._finalizer = weakref.finalize(self, _kill_all, self._procs)
        self._pool: list[_Worker] = [self._spawn() for _ in range(workers)]
        self._closed = False

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = Pipe()  # a socket pair: one duplex fd for each side
        search_path = [p or os.getcwd() for p in sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
        fd = child_conn.fileno()
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(fd), __file__, str(self.memory_mb)],
                                pass_fds=(fd,), env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        child_conn.close()
        self._procs[proc.pid] = proc
        parent_conn.send(self.preload)
        return _Worker(proc=proc, conn=parent_conn, started=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        _kill(worker.proc)
        worker.conn.close()
        self._procs.pop(worker.proc.pid, None)
        self._pool[self._pool.index(worker)] = self._spawn()

    def run(self, calls: list[Call]) -> list[Outcome]:
        """Run every call; the result list is in call order. Never raises for a call's own failure."""
        if self._closed:
            raise RuntimeError("WorkerPool.run() after close(); create a new pool")
        outcomes: list[Outcome | None] = [None] * len(calls)
        pending = deque(range(len(calls)))
        self._in_row, self._calls = {}, calls
        try:
            while True:
                self._dispatch(calls, pending, outcomes)
                if not pending and all(w.call is None for w in self._pool):
                    break
                self._collect(outcomes)
                self._expire(outcomes)
                if self.max_timeouts_in_row and max(self._in_row.values(), default=0) >= self.max_timeouts_in_row:
                    self._give_up(pending, outcomes)
                    break
        except BaseException:  # Ctrl-C, a worker that cannot start: drop calls in flight for a clean next run
            for worker in [w for w in self._pool if w.call is not None]:
                self._replace(worker)
            raise
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _dispatch(self, calls: list[Call], pending: deque[int], outcomes: list[Outcome | None]) -> None:
        for worker in list(self._pool):
            while pending and worker.ready and worker.call is None:
                i = pending.popleft()
                try:
                    payload = pickle.dumps(calls[i].kwargs, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as e:
                    outcomes[i] = Outcome(None, f"cannot send the call's arguments: {_error_text(e)}")
                    continue
                try:
                    worker.conn.send((i, calls[i].function_ref, payload))
                except OSError:  # it died while idle; the call never reached it
                    pending.appendleft(i)
                    self._replace(worker)
                    break
                worker.call, worker.deadline = i, time.monotonic() + self.timeout_s

    def _next_wakeup(self) -> float | None:
        """Seconds until the next call deadline or start deadline (None: nothing to wait for)."""
        deadlines = [w.deadline if w.ready else w.started + self.start_timeout_s for w in self._pool]
        return None if min(deadlines) == math.inf else max(0.0, min(deadlines) - time.monotonic())

    def _collect(self, outcomes: list[Outcome | None]) -> None:
        by_conn = {id(w.conn): w for w in self._pool}
        for conn in wait([w.conn for w in self._pool], timeout=self._next_wakeup()):
            worker = by_conn[id(conn)]
            try:
                message: tuple[Any, ...] = worker.conn.recv()
            except (EOFError, OSError):
                self._on_death(worker, outcomes)
                continue
            if message[0] == "ready":
                if message[1] is not None:
                    self._replace(worker)
                    raise RuntimeError(f"reward worker failed to start: {message[1]}")
                worker.ready = True
                continue
            call_id, value, error, steps = message
            assert call_id == worker.call, "a worker answered a call it was not given"
            outcomes[call_id] = Outcome(value, error, steps)
            worker.call, worker.deadline = None, math.inf
            self._in_row[self._calls[call_id].function_ref] = 0

    def _on_death(self, worker: _Worker, outcomes: list[Outcome | None]) -> None:
        _kill(worker.proc)
        code, ready, call = worker.proc.returncode, worker.ready, worker.call
        self._replace(worker)
        if not ready:
            raise RuntimeError(f"reward worker died while starting (exit code {code}); see its stderr above")
        if call is not None:
            outcomes[call] = Outcome(None, f"worker died (exit code {code})")

    def _expire(self, outcomes: list[Outcome | None]) -> None:
        now = time.monotonic()
        for worker in list(self._pool):
            if worker.call is not None and now >= worker.deadline:
                outcomes[worker.call] = Outcome(None, f"timeout after {self.timeout_s}s")
                ref = self._calls[worker.call].function_ref
                self._in_row[ref] = self._in_row.get(ref, 0) + 1
                self._replace(worker)
            elif not worker.ready and now >= worker.started + self.start_timeout_s:
                self._replace(worker)
                raise RuntimeError(f"reward worker did not start within {self.start_timeout_s}s")

    def _give_up(self, pending: deque[int], outcomes: list[Outcome | None]) -> None:
        """Answer every call not yet answered with GAVE_UP; workers still busy are replaced."""
        for worker in [w for w in self._pool if w.call is not None]:
            outcomes[worker.call] = Outcome(None, GAVE_UP)
            self._replace(worker)
        while pending:
            outcomes[pending.popleft()] = Outcome(None, GAVE_UP)

    def close(self) -> None:
        """Kill every worker (process groups, SIGKILL). Safe to call twice."""
        self._closed = True
        for worker in self._pool:
            worker.conn.close()
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
