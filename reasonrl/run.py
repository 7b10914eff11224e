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
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from reasonrl.config import RunConfig
from reasonrl.evaluate import EvalResult
from reasonrl.utils.ckpt import latest_checkpoint, restore_checkpoint, save_checkpoint
from reasonrl.utils.log import MetricSinks, Progress, truncate_metrics

Evaluate = Callable[[], tuple[dict[str, Any], dict[str, float]]]
"""() -> (the run's held-out EvalResult as a dict, extra eval metrics such as eval/<task>/*)."""


class Run:
    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool, quiet: bool, steps: int, forget: Any,
                 evaluate: Evaluate) -> None:
        self.cfg, self.run_dir, self.resume, self.quiet, self.steps = cfg, run_dir, resume, quiet, steps
        self.forget, self.evaluate = forget, evaluate
        self.evals: dict[str, Any] = {}
        self.sink: MetricSinks | None = None
        self.progress: Progress | None = None

    def begin(self, load: Callable[[Path, dict[str, Any]], None], intro: str = "evaluating the start model ...") -> int:
        """Create (or, resuming, reopen) the run directory; restore the last checkpoint through load(dir,
        state); on a fresh run print intro and evaluate the start model. Returns the first step to run."""
        from reasonrl.train import prepare_run_dir
        prepare_run_dir(self.run_dir, self.cfg, self.resume)
        start = 0
        if self.resume and (ckpt := latest_checkpoint(self.run_dir)) is not None:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            load(ckpt, state)
            restore_checkpoint(ckpt)
            start, self.evals = state["step"], state.get("evals", {})
            self.forget.restore(state.get("forget", {}))
        truncate_metrics(self.run_dir / "metrics.jsonl", start)
        self.sink = MetricSinks(self.run_dir, self.cfg, start)  # metrics.jsonl + log.sinks (tensorboard, wandb)
        self.progress = Progress(self.steps, start, desc=self.cfg.name, quiet=self.quiet)
        if start == 0:
            self.progress.write(intro)
            self.sink.log(0, self._evaluate(0))
        return start

    def _evaluate(self, step: int) -> dict[str, float]:
        result, extra = self.evaluate()
        self.evals[str(step)] = result
        return EvalResult(**result).metrics("eval") | extra | self.forget.measure(step, result)

    def end_step(self, step: int, metrics: dict[str, float], shown: dict[str, float], state: dict[str, Any],
                 write: Callable[[Path], None]) -> bool:
        """After step `step` (0-based): evaluate when due, log, checkpoint when due (state for trainer_state.json,
        write(dir) for the tensors). Returns True when the run must stop early (forget.on_budget=stop)."""
        assert self.sink is not None and self.progress is not None, "begin() first"
        done = step + 1
        last = done == self.steps
        if last or (self.cfg.eval.every and done % self.cfg.eval.every == 0):
            metrics |= self._evaluate(done)
        self.sink.log(done, metrics)
        self.progress.update(step, shown)
        if last or self.forget.stop or done % self.cfg.save_every == 0:
            save_checkpoint(self.run_dir, done, {"evals": self.evals, "forget": self.forget.state()} | state, write)
        return bool(self.forget.stop)  # forget.on_budget=stop: the KL budget is spent

    def finish(self, save: Callable[[Path], Any], summary: dict[str, Any] | None = None) -> Path:
        """Close the logs, save the result (save(run_dir)), write summary.json, the table and the report."""
        from reasonrl.train import finish_run, summarize
        assert self.sink is not None and self.progress is not None, "begin() first"
        self.progress.close()
        self.sink.close()
        save(self.run_dir)
        finish_run(self.run_dir, summarize(self.evals, self.cfg) | (summary or {}) | self.forget.finish(), self.cfg,
                   self.progress)
        return self.run_dir
