"""Fault points for the fault-injection tests (tests/e2e/test_fault_matrix.py).

    REASONRL_FAULT=checkpoint:2 reasonrl train ...   # SIGKILL this process the 2nd time it reaches the point

Points: generate (a rollout or evaluation batch is being sampled), reward (reward calls are in flight in the
workers), update (gradients computed, the optimizer step not taken), checkpoint (a checkpoint half written),
metrics (a step logged, its checkpoint not yet written). Without the variable fault_point returns at once.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("REASONRL_FAULT", "")
_POINT, _, _HIT = _SPEC.partition(":")
_hits = 0


def fault_point(name: str) -> None:
    """SIGKILL this process at the REASONRL_FAULT=<name>:<n>-th arrival here (a test's kill -9 at a known moment)."""
    global _hits
    if name != _POINT:
        return
    _hits += 1
    if _hits == int(_HIT or 1):
        os.kill(os.getpid(), signal.SIGKILL)
