"""Rewards: answer extraction, built-in rewards, composition, and the worker-process isolation."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reasonrl.config import RewardConfig
from reasonrl.rewards import REWARDS
from reasonrl.rewards.answers import extract_answer, lenient_answer, numbers_equal
from reasonrl.rewards.compose import RewardComposer, RewardError
from reasonrl.rewards.isolation import Call, Outcome, WorkerPool, function_ref, resolve_function
from reasonrl.types import Example

USER_REWARDS = """
import os, sys

def ok(completion, example, **options):
    return float(example.answer in completion)

def loop(completion, example):
    if "hang" in completion:
        while True:
            pass
    return 1.0

def crash(completion, example):
    if "crash" in completion:
        os._exit(1)
    return 1.0

def boom(completion, example):
    if "boom" in completion:
        raise ValueError("boom in the reward")
    return 1.0

def text(completion, example):
    return "not a number"

def torch_loaded(completion, example):
    return float("torch" in sys.modules)

def is_example(completion, example):
    from reasonrl.types import Example
    return float(isinstance(example, Example))
"""


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("user") / "my_rewards.py"
    path.write_text(USER_REWARDS)
    return str(path)


def example(answer: str | None = "42", **metadata: object) -> Example:
    return Example(id="t/0", prompt=[{"role": "user", "content": "q"}], answer=answer, metadata=dict(metadata))


# ---------------------------------------------------------------------------------------------------------
# Answer extraction (pure)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("work\nAnswer: 42", "42"),
        ("**Answer:** 42", "42"),
        ("**Answer: 42**", "42"),
        ("answer: 7\nlater... ANSWER: 9.", "9"),
        ("Final answer: \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("so \\boxed{\\frac{a}{b}} is it", "\\frac{a}{b}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("**Answer:**\n\n  17  ", "17"),
        ("no answer here", None),
        ("broken \\boxed{12", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Answer: 5", "5"),
        ("we get\n17", "17"),
        ("the total is 3 apples plus 4 pears, which makes 7 pieces of fruit in all of the baskets", "7"),
        ("", None),
    ],
)
def test_lenient_answer(text: str, expected: str | None) -> None:
    assert lenient_answer(text) == expected


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1,000", "1000", True),
        ("-3", "-3.0", True),
        ("3.0", "3", True),
        ("1/2", "0.5", True),
        ("$5", "5", True),
        ("5.", "5", True),
        ("0.333333", "1/3", True),
        ("1000000", "1000001", False),
        ("2", "3", False),
        ("five", "5", None),
        ("x", "y", None),
    ],
)
def test_numbers_equal(a: str, b: str, expected: bool | None) -> None:
    assert numbers_equal(a, b) is expected


# ---------------------------------------------------------------------------------------------------------
# Built-in rewards, called in-process


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("Answer: \\frac{1}{2}", "0.5", 1.0),
        ("Answer: 0.5", "\\frac{1}{2}", 1.0),
        ("The result is \\boxed{42}.", "42", 1.0),
        ("Answer: 1,000", "1000", 1.0),
        ("Answer: paris", "Paris", 1.0),
        ("Answer: 41", "42", 0.0),
        ("I think it is\n42", "42", 1.0),  # lenient: the bare last line
    ],
)
def test_correct(completion: str, answer: str, expected: float) -> None:
    assert REWARDS.get("correct")(completion, example(answer)) == expected


def test_correct_not_lenient_and_not_applicable() -> None:
    correct = REWARDS.get("correct")
    assert correct("I think it is\n42", example("42"), lenient=False) == 0.0
    assert correct("Answer: 42", example(None)) is None


def test_correct_uses_reasoning_gym_scorer() -> None:
    import reasoning_gym

    entry = reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=3, max_terms=2)[0]
    info = {"dataset": "basic_arithmetic", "config": {"max_terms": 2}, "entry": entry}
    ex = example(entry["answer"], reasoning_gym=info)
    correct = REWARDS.get("correct")
    assert correct(f"Answer: {entry['answer']}", ex) == 1.0
    assert correct(f"Answer: {int(entry['answer']) + 1}", ex) == 0.0
    assert correct(f"so the sum is\n{entry['answer']}", ex) == 1.0
    assert correct(f"so the sum is\n{entry['answer']}", ex, lenient=False) == 0.0


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("work\nAnswer: 5", 1.0),
        ("work\n**Answer:** 5\n\n", 1.0),
        ("Answer: 5\nthen more text", 0.0),
        ("**Answer:**", 0.0),
        ("the answer is 5", 0.0),
        ("", 0.0),
    ],
)
def test_format(completion: str, expected: float) -> None:
    assert REWARDS.get("format")(completion, example()) == expected


def test_format_pattern_and_numeric() -> None:
    assert REWARDS.get("format")("<think>x</think> 5", example(), pattern=r"<think>.*</think>") == 1.0
    assert REWARDS.get("format")("5", example(), pattern=r"<think>") == 0.0
    numeric = REWARDS.get("numeric")
    assert numeric("it is 40, no, 42", example("42")) == 1.0
    assert numeric("Answer: 42.\nI checked it 3 times", example("42")) == 1.0
    assert numeric("it is 41", example("42")) == 0.0
    assert numeric("it is 41", example("Paris")) is None


# ---------------------------------------------------------------------------------------------------------
# Worker pool


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(workers=2, timeout_s=2.0) as p:
        yield p


def calls(ref: str, completions: list[str]) -> list[Call]:
    return [Call(ref, {"completion": c, "example": example()}) for c in completions]


def test_pool_timeout_keeps_other_calls(pool: WorkerPool, user_file: str) -> None:
    out = pool.run(calls(f"{user_file}:loop", ["fine", "hang", "fine", "fine"]))
    assert [o.value for o in out] == [1.0, None, 1.0, 1.0]
    assert out[1].error == "timeout after 2.0s"
    assert [o.value for o in pool.run(calls(f"{user_file}:loop", ["fine"] * 3))] == [1.0] * 3


def test_pool_worker_crash_is_reported_and_pool_recovers(pool: WorkerPool, user_file: str) -> None:
    out = pool.run(calls(f"{user_file}:crash", ["crash", "fine", "fine"]))
    assert out[0].value is None and out[0].error == "worker died (exit code 1)"
    assert [o.value for o in out[1:]] == [1.0, 1.0]
    assert [o.value for o in pool.run(calls(f"{user_file}:crash", ["fine"] * 4))] == [1.0] * 4


def test_pool_errors_and_bad_return_values(pool: WorkerPool, user_file: str) -> None:
    out = pool.run(calls(f"{user_file}:boom", ["boom"]) + calls(f"{user_file}:text", ["x"]))
    assert out[0].error is not None and out[0].error.startswith("ValueError: boom in the reward")
    assert out[1].error is not None and "returned str 'not a number'" in out[1].error


def test_pool_workers_do_not_import_torch(pool: WorkerPool, user_file: str) -> None:
    # The kwargs hold an Example, whose module (reasonrl.types) imports torch in the parent.
    assert [o.value for o in pool.run(calls(f"{user_file}:torch_loaded", ["x", "y"]))] == [0.0, 0.0]
    assert pool.run(calls(f"{user_file}:is_example", ["x"]))[0].value == 1.0


def test_pool_module_ref(user_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(user_file).parent))  # workers inherit the parent's sys.path
    with WorkerPool(workers=1, timeout_s=5.0) as p:
        assert p.run(calls("my_rewards:ok", ["42", "41"])) == [Outcome(1.0), Outcome(0.0)]


def test_function_ref(user_file: str) -> None:
    assert function_ref(REWARDS.get("correct")) == "reasonrl.rewards.builtin:correct"
    assert function_ref(resolve_function(f"{user_file}:ok")) == f"{user_file}:ok"
    with pytest.raises(ValueError, match="module-level functions"):
        function_ref(lambda completion, example: 1.0)


def test_pool_close_kills_workers(user_file: str) -> None:
    p = WorkerPool(workers=1, timeout_s=5.0)
    assert p.run(calls(f"{user_file}:ok", ["42"]))[0].value == 1.0
    procs = list(p._procs.values())
    p.close()
    assert all(proc.poll() is not None for proc in procs)
    with pytest.raises(RuntimeError, match="after close"):
        p.run([])


# ---------------------------------------------------------------------------------------------------------
# Composition


def test_compose_builtins_weights_and_parts() -> None:
    import reasoning_gym

    entry = reasoning_gym.create_dataset("leg_counting", size=1, seed=0)[0]
    rg_example = example(entry["answer"], reasoning_gym={"dataset": "leg_counting", "config": {}, "entry": entry})
    cfg = RewardConfig(components={"correct": 1.0, "format": 0.1, "numeric": 0.5}, workers=1)
    with RewardComposer(cfg) as composer:
        scored = composer.score(
            ["x\nAnswer: 42", "it is 41", "Answer: \\boxed{42}", f"Answer: {entry['answer']}"],
            [example("42"), example("42"), example("Paris"), rg_example],
        )
    assert scored[0].parts == {"correct": 1.0, "format": 1.0, "numeric": 1.0}
    assert scored[0].total == pytest.approx(1.6)
    assert scored[1].parts == {"correct": 0.0, "format": 0.0, "numeric": 0.0} and scored[1].total == 0.0
    assert scored[2].parts == {"correct": 0.0, "format": 1.0, "numeric": None}
    assert scored[2].total == pytest.approx(0.1) and scored[2].errors == []
    assert scored[3].parts["correct"] == 1.0


def composer(user_file: str, on_error: str, **options: object) -> RewardComposer:
    cfg = RewardConfig(
        components={f"{user_file}:ok": 1.0, f"{user_file}:boom": 0.5},
        workers=1,
        timeout_s=5.0,
        on_error=on_error,
        options=dict(options),
    )  # type: ignore[arg-type]
    return RewardComposer(cfg)


def test_compose_user_reward_and_on_error_zero(user_file: str, caplog: pytest.LogCaptureFixture) -> None:
    with composer(user_file, "zero") as c, caplog.at_level(logging.WARNING):
        fine, failed = c.score(["42", "42 boom"], [example(), example()])
    assert fine.total == 1.5 and fine.errors == []
    assert failed.total == 1.0 and failed.parts[f"{user_file}:boom"] == 0.0
    assert "boom in the reward" in failed.errors[0]
    assert "t/0" in caplog.text and "42 boom" in caplog.text


def test_compose_on_error_skip_group(user_file: str) -> None:
    with composer(user_file, "skip_group") as c:
        fine, failed = c.score(["42", "42 boom"], [example(), example()])
    assert fine.total == 1.5 and failed.total is None and failed.parts[f"{user_file}:ok"] == 1.0


def test_compose_on_error_stop(user_file: str) -> None:
    with composer(user_file, "stop") as c, pytest.raises(RewardError, match="boom in the reward") as info:
        c.score(["42", "42 boom"], [example(), example()])
    assert info.value.completion == "42 boom"


def test_compose_validation(user_file: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown reward 'corect'.*did you mean 'correct'.*known: .*correct, format"):
        RewardComposer(RewardConfig(components={"corect": 1.0}))
    with pytest.raises(ValueError, match="no_such_module_xyz"):
        RewardComposer(RewardConfig(components={"no_such_module_xyz:fn": 1.0}))
    with pytest.raises(ValueError, match="has no function 'missing'"):
        RewardComposer(RewardConfig(components={f"{user_file}:missing": 1.0}))
    with pytest.raises(ValueError, match="does not exist"):
        RewardComposer(RewardConfig(components={f"{tmp_path}/nope.py:fn": 1.0}))
    with pytest.raises(ValueError, match="unexpected keyword argument 'patern'"):
        RewardComposer(RewardConfig(components={"format": 1.0}, options={"format": {"patern": "x"}}))
    with pytest.raises(ValueError, match="not in rewards.components"):
        RewardComposer(RewardConfig(components={"format": 1.0}, options={"correct": {"lenient": False}}))


def test_compose_user_reward_with_options(tmp_path: Path) -> None:
    path = tmp_path / "scaled.py"
    path.write_text(
        textwrap.dedent("""
        def scaled(completion, example, scale=1.0):
            return scale * len(completion)
    """)
    )
    cfg = RewardConfig(components={f"{path}:scaled": 2.0}, options={f"{path}:scaled": {"scale": 0.5}}, workers=1)
    with RewardComposer(cfg) as c:
        (scored,) = c.score(["abcd"], [example()])
    assert scored.parts == {f"{path}:scaled": 2.0} and scored.total == 4.0
