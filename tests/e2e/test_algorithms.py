"""Every registered advantage estimator and policy loss learns: on the tiny random model and the toy digits task,
the reward clearly rises within 30 steps (about 10 s each on a CPU). Parametrised over the registries, so a new
entry is tested automatically; an entry that needs settings to be valid lists them in EXTRA.

Also: DAPO as a whole (clip-higher, token-mean, overlong shaping and filtering, dynamic sampling, several
mini-batches) learns, and a run with a critic and an adaptive KL coefficient resumes exactly.
"""
import json
from pathlib import Path

import pytest

from reasonrl.algos import ADVANTAGES, POLICY_LOSSES
from reasonrl.train import train
from tests.helpers import TOY_REWARD, tiny_config

EXTRA = {"gspo": ["algo.aggregation=seq-mean-token-mean"]}


def reward_curve(tmp_path, *overrides: str) -> tuple[float, float]:
    cfg = tiny_config(tmp_path, "steps=30", "save_every=100", "log_rollouts_every=0", "prompts_per_step=4",
                      "samples_per_prompt=8", "optim.micro_batch_size=32", *overrides)
    run_dir = train(cfg, quiet=True)
    rewards = [json.loads(line)["rollout/reward"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["step"] > 0]
    return sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5


# Random init gives ~0.10 (10 digits of 98 symbols); noise in a 5-step mean is about 0.03.
MARGIN = 0.25


@pytest.mark.slow
@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_advantage_estimator_raises_the_reward(tmp_path, name):
    first, last = reward_curve(tmp_path, f"algo.advantage={name}", *EXTRA.get(name, []))
    print(f"advantage {name}: toy reward first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last > first + MARGIN, (name, first, last)


@pytest.mark.slow
@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_policy_loss_raises_the_reward(tmp_path, name):
    # two mini-batches, so the ratio leaves 1 and each loss's clipping/weighting is exercised
    first, last = reward_curve(tmp_path, f"algo.loss.name={name}", "algo.mini_batches=2", *EXTRA.get(name, []))
    print(f"loss {name}: toy reward first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last > first + MARGIN, (name, first, last)


@pytest.mark.slow
def test_process_supervision_with_per_step_rewards_raises_the_reward(tmp_path):
    # every digit is a rewarded step, so grpo_process gives each token the normalised reward of the digits at or
    # after it (not one advantage per completion as with outcome rewards)
    reward = TOY_REWARD.replace(":digits", ":digit_steps")
    first, last = reward_curve(tmp_path, "algo.advantage=grpo_process", f"rewards.components={{{reward}: 1.0}}")
    print(f"grpo_process with per-digit steps: toy reward first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last > first + MARGIN, (first, last)


@pytest.mark.slow
def test_dapo_raises_the_reward(tmp_path):
    first, last = reward_curve(tmp_path, "algo.loss.clip_high=0.28", "algo.aggregation=token-mean",
                               "algo.overlong.buffer=4", "algo.overlong.mask_truncated=true",
                               "algo.dynamic_sampling.enabled=true", "algo.mini_batches=2")
    print(f"dapo: toy reward first 5 steps {first:.3f}, last 5 steps {last:.3f}")
    assert last > first + MARGIN, (first, last)


@pytest.mark.slow
def test_a_run_with_a_critic_and_adaptive_kl_resumes_exactly(tmp_path):
    extra = ["save_every=1", "algo.advantage=gae", "algo.kl.coef=0.05", "algo.kl.placement=reward",
             "algo.kl.estimator=k1", "algo.kl.target=0.01", "algo.epochs=2", "algo.mini_batches=2"]
    straight = train(tiny_config(tmp_path, "name=straight", "steps=4", *extra), quiet=True)
    train(tiny_config(tmp_path, "name=split", "steps=2", *extra), quiet=True)
    resumed = train(tiny_config(tmp_path, "name=split", "steps=4", *extra), resume=True, quiet=True)

    def metrics(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: {k: v for k, v in r.items() if not k.startswith(("time/", "eval/"))} for r in rows}

    want, got = metrics(straight), metrics(resumed)
    for step in (3, 4):
        assert want[step].keys() == got[step].keys()
        for key, value in want[step].items():
            assert value == pytest.approx(got[step][key], rel=1e-6, abs=1e-7), (step, key)
    assert want[4]["loss/kl_coef"] != 0.05 and "critic/value_loss" in want[4]


RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_trains_on_the_tiny_model(tmp_path, recipe):
    import yaml

    from reasonrl.config import load_config
    from tests.helpers import tiny_overrides
    spec = yaml.safe_load(recipe.read_text())
    own_task = []  # a recipe with its own multi-turn environment keeps the task that environment needs
    if spec.get("env", {}).get("name", "single_turn") not in ("single_turn", "tool_math"):
        own_task = [f"task.name={spec['task']['name']}", "task.path=null", "task.train_size=20",
                    "task.eval_size=4", "env.max_turns=2"]
    cfg = load_config(recipe, tiny_overrides(tmp_path, "steps=2", "task.options={}", "eval.samples=1",
                                             "log_rollouts_every=0", "algo.overlong.buffer=0", *own_task))
    run_dir = train(cfg, quiet=True)
    assert (run_dir / "adapter").is_dir()
