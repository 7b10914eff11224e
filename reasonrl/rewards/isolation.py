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

The worker side (function references, checks of a reward's value, the worker loop) is in worker.py.
"""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait
from typing import Any

from reasonrl.rewards import worker as _worker_module
from reasonrl.rewards.worker import (
    _BOOT,
    GAVE_UP,
    Call,
    Outcome,
    _error_text,
    check_result,
    check_value,
    function_ref,
    is_file_ref,
    normalize_ref,
    resolve_function,
)
from reasonrl.utils.faults import fault_point

__all__ = [
    "GAVE_UP",
    "Call",
    "Outcome",
    "WorkerPool",
    "check_result",
    "check_value",
    "function_ref",
    "is_file_ref",
    "normalize_ref",
    "resolve_function",
]


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

    def __init__(
        self,
        workers: int,
        timeout_s: float,
        preload: list[str] | tuple[str, ...] = (),
        start_timeout_s: float = 120.0,
        max_timeouts_in_row: int = 0,
        memory_mb: int = 0,
    ) -> None:
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
        self._in_row: dict[str, int] = {}  # function ref -> its calls that timed out in a row
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
        argv = [sys.executable, "-c", _BOOT, str(fd), _worker_module.__file__, str(self.memory_mb)]
        proc = subprocess.Popen(argv, pass_fds=(fd,), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
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
                fault_point("reward")  # a call in flight

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
            if (error or "").startswith("MemoryError"):  # the worker exits after one: never hand it another call
                self._replace(worker)

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
        for worker, call in [(w, w.call) for w in self._pool if w.call is not None]:
            outcomes[call] = Outcome(None, GAVE_UP)
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
