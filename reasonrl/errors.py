"""The errors the command line turns into one line and an exit status (cli.main). This module imports nothing
heavy, so the CLI can catch them without importing torch (`reasonrl list` and `--help` stay fast)."""

from __future__ import annotations

import signal
from pathlib import Path


class RunFailure(RuntimeError):
    """A run stopped on a failure that is not bad input (exit 1), its checkpoints intact: a reward that fails
    (rewards.on_error=stop, the breaker), a weight sync that fails its check, a loss that stays NaN."""


class RunStopped(Exception):
    """The run stopped on SIGINT/SIGTERM after a step, with a checkpoint of that step."""

    def __init__(self, run_dir: Path, step: int, signum: int) -> None:
        self.run_dir, self.step, self.signum = run_dir, step, signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after step {step}; its checkpoint is in "
            f"{run_dir}/checkpoints; continue with --resume {run_dir}"
        )
