"""Worked solutions written for reasoning-gym problems: correct, checkable by `steps`, and used by SFT."""

import pytest

from reasonrl.config import load_config
from reasonrl.rewards.steps import verdicts
from reasonrl.tasks import load_task, shot_reply
from reasonrl.tasks.worked import worked_solution


@pytest.mark.parametrize(
    ("expression", "answer", "solution"),
    [
        ("4 - 1 - 7", "-4", "4 - 1 = 3\n3 - 7 = -4"),
        ("-4 + 12 - 7", "1", "-4 + 12 = 8\n8 - 7 = 1"),
        ("3 + 9", "12", "3 + 9 = 12"),
        ("12 - 30 + 5 - 1", "-14", "12 - 30 = -18\n-18 + 5 = -13\n-13 - 1 = -14"),
    ],
)
def test_chains_are_worked_left_to_right(expression, answer, solution):
    assert worked_solution("basic_arithmetic", {"expression": expression}, answer) == solution
    assert worked_solution("chain_sum", {"expression": expression}, answer) == solution


def test_no_solution_when_it_cannot_be_written_or_disagrees_with_the_answer():
    assert worked_solution("basic_arithmetic", {"expression": "(4 - 1) * 7"}, "21") is None
    assert worked_solution("basic_arithmetic", {"expression": "4 - 1 - 7"}, "-5") is None
    assert worked_solution("gcd", {"numbers": [4, 6]}, "2") is None
    assert worked_solution("leg_counting", {"animals": {"unicorn": 2}}, "8") is None


def test_legs_are_one_product_per_animal_then_the_sum():
    text = worked_solution("leg_counting", {"animals": {"chicken": 14, "beetle": 3}}, "46")
    assert text == "14 chickens have 14 * 2 = 28 legs\n3 beetles have 3 * 6 = 18 legs\n28 + 18 = 46"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (
            "basic_arithmetic",
            "{min_terms: 3, max_terms: 3, min_digits: 1, max_digits: 1, operators: ['+', '-'], "
            "allow_parentheses: false, allow_negation: false}",
        ),
        ("chain_sum", "{min_terms: 2, max_terms: 4, min_digits: 1, max_digits: 2}"),
        ("leg_counting", "{min_animals: 2, max_animals: 3}"),
    ],
)
def test_generated_problems_carry_solutions_whose_every_step_holds(name, options):
    cfg = load_config(
        None, [f"task.name=reasoning_gym:{name}", f"task.options={options}", "task.train_size=40", "task.eval_size=10"]
    )
    task = load_task(cfg.task)
    for example in task.train + task.eval:
        solution = example.metadata["solution"]
        checked = verdicts(solution)
        assert checked and all(v.holds for v in checked), (example.id, solution)
        reply = shot_reply(example)
        assert reply == f"{solution}\nAnswer: {example.answer}"  # what SFT on the task's references trains on
