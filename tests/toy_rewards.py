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
