"""Peak memory of a phase of a step (generation, update), logged as memory/<phase>_gb beside the plan's prediction.

On a GPU it is torch's peak allocation on the device (torch.cuda.max_memory_allocated, reset per phase); on a
Linux CPU the process's peak resident set (VmHWM of /proc/self/status, reset per phase by writing 5 to
/proc/self/clear_refs); elsewhere the peak since the process started (ru_maxrss)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

GiB = 2**30


class PhasePeaks:
    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda") and torch.cuda.is_available()
        self.resettable = self.cuda or _reset_rss_peak()

    def start(self) -> None:
        """Begin a phase: its peak counts from the memory in use now."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            _reset_rss_peak()

    def peak_gb(self) -> float:
        """The peak since start() (or since the process began, where it cannot be reset), in GiB."""
        if self.cuda:
            return torch.cuda.max_memory_allocated() / GiB
        if self.resettable:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GiB
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GiB


def _reset_rss_peak() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
