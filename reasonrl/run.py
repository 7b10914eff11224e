"""The run lifecycle that train, sft (and so pipeline) share: the run directory, resume from the last checkpoint,
metrics sinks and progress, evaluations on schedule (with the forgetting monitor), checkpoints of every stateful
part, and the end-of-run summary. The loops own only what differs: what a step does.

    run = Run(cfg, run_dir, resume, quiet, steps, forget, evaluate)
    start = run.begin(load)                      # load(checkpoint_dir, trainer_state) restores the roles
    for step in range(start, steps):
        metrics = ...                            # the step
        if run.end_step(step, metrics, shown, state, write):   # evaluate, log, checkpoint; True: stop early
            break
    run.finish(save, summary_extra)

Every run directory records its state in state.json (running, finished, stopped, failed with the error), written
atomically; read_state() tells a run killed with SIGKILL (state running, its process gone) from a live one. The
first SIGINT or SIGTERM lets the current step finish, writes a checkpoint, records "stopped" and raises RunStopped
(`--resume` continues); a second one aborts at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig
from reasonrl.early_stop import EarlyStop, Watcher
from reasonrl.errors import RunStopped
from reasonrl.eval_progress import EvalProgress
from reasonrl.evaluate import EvalResult
from reasonrl.utils.ckpt import latest_checkpoint, restore_checkpoint, save_checkpoint
from reasonrl.utils.files import atomic_write_text
from reasonrl.utils.faults import fault_point
from reasonrl.utils.log import MetricSinks, Progress, truncate_metrics

Evaluate = Callable[[], tuple[dict[str, Any], dict[str, float]]]
"""() -> (the run's held-out EvalResult as a dict, extra eval metrics such as eval/<task>/*)."""
STATE_FILE = "state.json"


def write_state(run_dir: Path, state: str, **fields: Any) -> None:
    """Record the run's state (running, finished, stopped, failed) with this process's pid and the time."""
    record = {"state": state, "pid": os.getpid(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    atomic_write_text(run_dir / STATE_FILE, json.dumps(record, indent=1))


def read_state(run_dir: Path) -> dict[str, Any]:
    """The recorded state; 'running' whose process is gone reads as 'killed' (SIGKILL, power loss, OOM killer)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return {"state": "unknown"}
    record = json.loads(path.read_text())
    if record.get("state") == "running" and not process_alive(int(record.get("pid", 0))):
        record["state"] = "killed"
    return record


def describe_state(run_dir: Path) -> str:
    """One line for people: 'state: stopped after step 4 of 10 (SIGTERM); continue with ...'."""
    record = read_state(run_dir)
    state, step, steps = record["state"], record.get("step"), record.get("steps")
    where = f" after step {step} of {steps}" if step is not None else " before its first step"
    if state == "unknown":
        return f"state: unknown (no {STATE_FILE} in {run_dir})"
    if state == "finished":
        return f"state: finished ({steps} steps)"
    if state == "running":
        return f"state: running{where} (pid {record.get('pid')})"
    detail = {
        "stopped": record.get("signal"),
        "failed": record.get("error"),
        "killed": f"process {record.get('pid')} ended without recording why",
    }[state]
    command = record.get("command", "train")
    return f"state: {state}{where} ({detail}); continue with `reasonrl {command} --resume {run_dir}`"


def process_alive(pid: int) -> bool:
    """Whether process pid (on this host) is running; a zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


class _StopRequest:
    """The first SIGINT/SIGTERM is remembered (the loop stops after its step); a second one aborts."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint (send it again to abort now)",
            file=sys.stderr,
            flush=True,
        )


_stop = _StopRequest()


def stop_requested() -> int | None:
    """The signal that asked the run to stop, if any."""
    return _stop.signum


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[None]:
    """While the block runs (main thread only), SIGINT/SIGTERM ask for a stop after the current step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.signum = None
    previous = {s: signal.signal(s, _stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop.signum = None


class Run:
    def __init__(
        self,
        cfg: RunConfig,
        run_dir: Path,
        resume: bool,
        quiet: bool,
        steps: int,
        forget: Any,
        evaluate: Evaluate,
        command: str = "train",
        save_adapter: Callable[[Path], Any] | None = None,
        watchers: Sequence[Watcher] = (),
    ) -> None:
        self.cfg, self.run_dir, self.resume, self.quiet, self.steps = cfg, run_dir, resume, quiet, steps
        self.command = command  # train | sft: what --resume continues it with
        self.forget, self.evaluate = forget, evaluate
        self.early = EarlyStop(cfg.eval.early_stop, run_dir, save_adapter)  # eval.early_stop; off by default
        self.watchers = [self.early.watch, *watchers]  # after each evaluation: a reason to stop, or None
        self.stop_reason: str | None = None
        self.evals: dict[str, Any] = {}
        self.sink: MetricSinks | None = None
        self.progress: Progress | None = None

    def begin(
        self, load: Callable[[Path, dict[str, Any]], object], intro: str = "evaluating the start model ..."
    ) -> int:
        """Create (or, resuming, reopen) the run directory; restore the last checkpoint through load(dir,
        state); on a fresh run print intro and evaluate the start model. Returns the first step to run."""
        from reasonrl.train import prepare_run_dir

        prepare_run_dir(self.run_dir, self.cfg, self.resume)
        self._state("running", step=None)
        start = 0
        if self.resume and (ckpt := latest_checkpoint(self.run_dir)) is not None:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            load(ckpt, state)
            restore_checkpoint(ckpt)
            start, self.evals = state["step"], state.get("evals", {})
            self.forget.restore(state.get("forget", {}))
            self.early.restore(state.get("early_stop", {}))
        # Steps after the checkpoint are re-run and re-logged; without one, so is the start evaluation (step 0).
        truncate_metrics(self.run_dir / "metrics.jsonl", start if start else -1)
        self.sink = MetricSinks(self.run_dir, self.cfg, start)  # metrics.jsonl + log.sinks (tensorboard, wandb)
        self.progress = Progress(self.steps, start, desc=self.cfg.name, quiet=self.quiet)
        if start == 0:
            self._evaluate_start(intro)
        return start

    def _evaluate_start(self, intro: str) -> None:
        """Step 0: the start model's evaluation, reused from the cache when eval.before=auto has one."""
        from reasonrl import eval_cache

        assert self.progress is not None and self.sink is not None, "begin() made them"
        before = self.cfg.eval.before
        if before == "skip":
            self.progress.write("start model not evaluated (eval.before=skip): no before/after comparison")
            return
        cached = eval_cache.load(self.cfg) if before == "auto" and eval_cache.cacheable(self.cfg) else None
        if cached is not None:
            result, extra, seconds = cached
            self.progress.write(
                f"start model: reusing its evaluation from {eval_cache.path_of(self.cfg)} "
                f"(saves {seconds:.0f} s; eval.before=always recomputes it)"
            )
            self.evals["0"] = result
            self.sink.log(0, EvalResult(**result).metrics("eval") | extra)
            return
        self.progress.write(intro)
        started = time.time()
        result, extra = self.evaluate()
        self.evals["0"] = result
        self.sink.log(0, EvalResult(**result).metrics("eval") | extra | self.forget.measure(0, result))
        if eval_cache.cacheable(self.cfg):
            eval_cache.store(self.cfg, result, extra, time.time() - started)

    def eval_progress(self) -> EvalProgress | None:
        """A progress reporter for an evaluation, written above the bar (or as log lines with --quiet)."""
        return EvalProgress(self.progress.write, "evaluating") if self.progress is not None else None

    def _state(self, state: str, **fields: Any) -> None:
        write_state(self.run_dir, state, command=self.command, steps=self.steps, **fields)

    def _evaluate(self, step: int) -> dict[str, float]:
        result, extra = self.evaluate()
        self.evals[str(step)] = result
        return EvalResult(**result).metrics("eval") | extra | self.forget.measure(step, result)

    def end_step(
        self,
        step: int,
        metrics: dict[str, float],
        shown: dict[str, float],
        state: dict[str, Any],
        write: Callable[[Path], None],
    ) -> bool:
        """After step `step` (0-based): evaluate when due, log, checkpoint when due (state for trainer_state.json,
        write(dir) for the tensors). Returns True when the run must stop early (forget.on_budget=stop)."""
        assert self.sink is not None and self.progress is not None, "begin() first"
        done = step + 1
        last = done == self.steps
        if last or (self.cfg.eval.every and done % self.cfg.eval.every == 0):
            metrics |= self._evaluate(done)
            reasons = [watch(done, metrics) for watch in self.watchers]  # every watcher sees every evaluation
            self.stop_reason = next((r for r in reasons if r), None) if not last else None
        self.sink.log(done, metrics)
        fault_point("metrics")
        self.progress.update(step, shown)
        signum = stop_requested()
        stop = bool(self.forget.stop or self.stop_reason)
        if last or stop or signum or done % self.cfg.save_every == 0:
            kept = {"evals": self.evals, "forget": self.forget.state(), "early_stop": self.early.state()}
            save_checkpoint(self.run_dir, done, kept | state, write)
        self._state("running", step=done)
        if signum and not last:
            self.progress.close()
            self.sink.close()
            self._state("stopped", step=done, signal=signal.Signals(signum).name)
            raise RunStopped(self.run_dir, done, signum)
        if self.stop_reason:
            self.progress.write(f"stopping after step {done}: {self.stop_reason}")
        return stop  # the KL budget is spent (forget.on_budget=stop), or a watcher stopped the run

    def finish(self, save: Callable[[Path], Any], summary: dict[str, Any] | None = None) -> Path:
        """Close the logs, save the result (save(run_dir)), write summary.json, the table and the report."""
        from reasonrl.train import finish_run, summarize

        assert self.sink is not None and self.progress is not None, "begin() first"
        self.progress.close()
        self.sink.close()
        save(self.run_dir)
        stopped = {"stopped_early": self.stop_reason} if self.stop_reason else {}
        early = {"early_stop": best} if (best := self.early.summary()) else {}
        finish_run(
            self.run_dir,
            summarize(self.evals, self.cfg) | (summary or {}) | self.forget.finish() | stopped | early,
            self.cfg,
            self.progress,
        )
        self._state("finished", step=max(map(int, self.evals), default=0))
        return self.run_dir
