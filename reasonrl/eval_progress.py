"""Progress of an evaluation: problems sampled, accuracy so far and time left, written while an engine that
samples in chunks (the hf engine) works through the held-out problems."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from reasonrl.engine import Completion, Engine


class EvalProgress:
    """'evaluating: 48/100 problems sampled, accuracy so far 0.62 (48 problems, 384 samples), 35 s, about 40 s
    left', at most every `every` seconds, through write; fed by an engine that samples in chunks (the hf engine's
    `progress`). The accuracy so far is that of the 'correct' reward on the samples drawn so far (single-turn
    tasks with reference answers; evaluate() sets `scorer`); the final numbers come from the full scoring."""

    def __init__(self, write: Callable[[str], None], label: str, every: float = 10.0) -> None:
        self.write, self.label, self.every = write, label, every
        self.started = self.shown = time.monotonic()
        self.scorer: Callable[[int, Completion], bool | None] | None = None
        """(problem index, completion) -> full credit or not, or None when it cannot be scored."""
        self.problems_scored, self.verdicts = 0, [0, 0]  # problems seen, [correct, scored] samples

    def restart(self, label: str) -> None:
        """Report another pass over the problems (the greedy one after the sampled one) from zero."""
        self.label = label
        self.started = self.shown = time.monotonic()
        self.scorer, self.problems_scored, self.verdicts = None, 0, [0, 0]

    def __call__(self, done: int, total: int, groups: list[list[Completion]] | None = None) -> None:
        if self.scorer is not None and groups is not None:
            for i in range(self.problems_scored, len(groups)):
                for completion in groups[i]:
                    verdict = self.scorer(i, completion)
                    if verdict is not None:
                        self.verdicts[0] += int(verdict)
                        self.verdicts[1] += 1
            self.problems_scored = len(groups)
        now = time.monotonic()
        if now - self.shown < self.every or done >= total:
            return
        self.shown = now
        self.write(self.line(done, total, now - self.started))

    def line(self, done: int, total: int, spent: float) -> str:
        correct, scored = self.verdicts
        accuracy = f"accuracy so far {correct / scored:.2f} ({scored} samples), " if scored else ""
        left = spent * (total - done) / max(done, 1)
        return f"{self.label}: {done}/{total} problems sampled, {accuracy}{spent:.0f} s, about {left:.0f} s left"


@contextlib.contextmanager
def reporting(engine: Engine, report: EvalProgress | None) -> Iterator[None]:
    """Let an engine that can (one with a `progress` attribute) report its chunks while the block runs."""
    if report is None or not hasattr(engine, "progress"):
        yield
        return
    engine.progress = report
    try:
        yield
    finally:
        engine.progress = None
