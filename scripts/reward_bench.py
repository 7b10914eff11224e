"""Reward throughput and sandbox overhead on this machine (numbers for the README).

.venv/bin/python scripts/reward_bench.py
"""

import statistics
import time

from reasonrl.config import RewardConfig
from reasonrl.rewards.code import run_tests
from reasonrl.rewards.compose import RewardComposer
from reasonrl.sandbox import Limits, isolation_mode, run
from reasonrl.types import Example


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    print(f"sandbox mode: {isolation_mode()}")
    for mode in ("namespaces", "rlimits") if isolation_mode() == "namespaces" else ("rlimits",):
        t = timed(lambda mode=mode: run(["{python}", "-c", "pass"], limits=Limits(timeout_s=10), mode=mode), 20)
        print(f"sandbox {mode}: empty program {statistics.median(t) * 1000:.0f} ms median per call")
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    t = timed(lambda: run_tests("def add(a, b):\n    return a + b", tests), 20)
    print(f"code_tests harness, 2 tests: {statistics.median(t) * 1000:.0f} ms median per call")
    example = Example(id="b", prompt=[{"role": "user", "content": "q"}], answer="13")
    code_example = Example(id="c", prompt=[], metadata={"tests": tests})
    text = "First 7 + 6 = 13. Then 3x = 12 so x = 4, and 2(x + 1) = 2x + 2.\nAnswer: 13"
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    for components, completion, ex in (
        (({"correct": 1.0, "format": 0.1}), text, example),
        ({"steps": 1.0}, text, example),
        ({"correct": 1.0, "format": 0.1, "steps": 0.5}, text, example),
        ({"code_tests": 1.0}, code, code_example),
    ):
        with RewardComposer(RewardConfig(components=components, workers=2, timeout_s=30)) as composer:
            composer.score([completion] * 4, [ex] * 4)  # warm-up: imports in the workers
            n = 64
            start = time.perf_counter()
            composer.score([completion] * n, [ex] * n)
            seconds = time.perf_counter() - start
        print(f"{', '.join(components)}: {n / seconds:.0f} completions/s (2 workers, batch of {n})")


if __name__ == "__main__":
    main()
