"""Learning on a tiny random model: GRPO + LoRA must raise a toy reward clearly within about a minute of CPU.
The threshold and the noise it was set against are in tests/learning.py (scenario toy_grpo)."""

import pytest

from tests.learning import SCENARIOS


@pytest.mark.slow
def test_grpo_lora_raises_reward_on_a_toy_task(tmp_path):
    scenario = SCENARIOS["toy_grpo"]
    got = scenario.measure(tmp_path)
    print(f"toy reward: first 5 steps {got['first']:.3f}, last 5 steps {got['last']:.3f}")
    scenario.check(got)
