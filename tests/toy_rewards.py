"""Toy rewards for tiny-model tests (loaded as user functions: tests/toy_rewards.py:digits)."""


def digits(completion: str, example) -> float:
    """Fraction of the completion's characters that are digits: a dense reward a tiny model can learn fast."""
    return sum(c.isdigit() for c in completion) / max(len(completion), 1)


def flaky(completion: str, example) -> float:
    """Raises for every other example: a reward bug that must not kill the run."""
    if int(example.answer) % 2:
        raise RuntimeError(f"reward bug on {example.id}")
    return 1.0


def digit_steps(completion: str, example):
    """`digits` with process detail: every digit is a step worth 1/len, ending at that character (grpo_process)."""
    from reasonrl.rewards import StepScores

    n = max(len(completion), 1)
    steps = tuple((i + 1, 1.0 / n) for i, c in enumerate(completion) if c.isdigit())
    return StepScores(total=sum(v for _, v in steps), steps=steps)


def slow_digits(completion: str, example) -> float:
    """`digits`, 20 ms per call: a step long enough to kill a process in the middle of it."""
    import time

    time.sleep(0.02)
    return digits(completion, example)


def stall_once(completion: str, example, marker: str = "", seconds: float = 60.0) -> float:
    """`digits`, except that the first call anywhere (the one that creates the file `marker`) sleeps `seconds`:
    a reward that hangs once, for the watchdog to find."""
    import os
    import time

    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        time.sleep(seconds)
    except FileExistsError:
        pass
    return digits(completion, example)
