"""Multi-turn learning end to end: on the corridor environment (walk to a goal in at most 4 turns, one character
a turn), GiGPO and GRPO each raise the success rate of a tiny random model within 60 steps (about a minute each
on 2 CPU cores). bench/gigpo_vs_grpo.py compares the two over several seeds; the threshold and the noise it was
set against are in tests/learning.py (scenarios corridor:*)."""

import pytest

from tests.learning import SCENARIOS


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["gigpo", "grpo"])
def test_gigpo_and_grpo_raise_the_success_rate_on_the_corridor(tmp_path, advantage):
    scenario = SCENARIOS[f"corridor:{advantage}"]
    got = scenario.measure(tmp_path)
    print(f"{advantage}: corridor success first 5 steps {got['first']:.3f}, last 5 steps {got['last']:.3f}")
    scenario.check(got)
