"""Multi-turn learning end to end: on the corridor environment (walk to a goal in at most 4 turns, one character
a turn), GiGPO and GRPO each raise the success rate of a tiny random model within 40 steps (about 50 s each on
2 CPU cores). bench/gigpo_vs_grpo.py compares the two over several seeds."""
import json

import pytest

from reasonrl.train import train
from tests.helpers import tiny_config


def success_curve(tmp_path, *overrides: str) -> list[float]:
    cfg = tiny_config(tmp_path, "env.name=corridor", "task.name=corridor", "task.path=null", "task.eval_size=12",
                      "sampling.max_new_tokens=1", "steps=40", "save_every=100", "log_rollouts_every=0",
                      "prompts_per_step=8", "samples_per_prompt=8", "optim.micro_batch_size=64", "optim.lr=0.005",
                      *overrides)
    run_dir = train(cfg, quiet=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["rollout/reward"] for r in rows if r["step"] > 0]


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["gigpo", "grpo"])
def test_gigpo_and_grpo_raise_the_success_rate_on_the_corridor(tmp_path, advantage):
    success = success_curve(tmp_path, f"algo.advantage={advantage}", "algo.gamma=0.95")
    first, last = sum(success[:5]) / 5, sum(success[-5:]) / 5
    print(f"{advantage}: corridor success first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    # A random walk succeeds about 0.4 of the time (goals 1-3 cells away, 4 turns); a 5-step mean of 64 episodes
    # a step varies by about 0.04 (the prompts of a step differ in distance), so +0.25 is well beyond noise.
    assert last > first + 0.25, (first, last)
