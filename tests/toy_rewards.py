"""Toy rewards for tiny-model tests (loaded as user functions: tests/toy_rewards.py:digits)."""


def digits(completion: str, example) -> float:
    """Fraction of the completion's characters that are digits: a dense reward a tiny model can learn fast."""
    return sum(c.isdigit() for c in completion) / max(len(completion), 1)


def flaky(completion: str, example) -> float:
    """Raises for every other example: a reward bug that must not kill the run."""
    if int(example.answer) % 2:
        raise RuntimeError(f"reward bug on {example.id}")
    return 1.0
