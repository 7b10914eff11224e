"""Every registered advantage estimator and policy loss learns: on the tiny random model and the toy digits task,
the reward clearly rises within 30 steps (about 10 s each on a CPU). Parametrised over the registries, so a new
entry is tested automatically; an entry that needs settings to be valid lists them in tests/learning.py (EXTRA).

Also: DAPO as a whole (clip-higher, token-mean, overlong shaping and filtering, dynamic sampling, several
mini-batches) learns, and a run with a critic and an adaptive KL coefficient resumes exactly.
"""

import json
import math
from pathlib import Path

import pytest

from reasonrl.algos import ADVANTAGES, POLICY_LOSSES
from reasonrl.train import train
from tests.helpers import tiny_config
from tests.learning import SCENARIOS  # thresholds, and the noise across seeds they were set against


def learns(tmp_path, name: str) -> None:
    scenario = SCENARIOS[name]
    got = scenario.measure(tmp_path)
    print(f"{name}: toy reward first 5 steps {got['first']:.3f}, last 5 steps {got['last']:.3f}")
    scenario.check(got)


@pytest.mark.slow
@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_advantage_estimator_raises_the_reward(tmp_path, name):
    learns(tmp_path, f"advantage:{name}")


@pytest.mark.slow
@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_policy_loss_raises_the_reward(tmp_path, name):
    # two mini-batches, so the ratio leaves 1 and each loss's clipping/weighting is exercised
    learns(tmp_path, f"loss:{name}")


@pytest.mark.slow
def test_process_supervision_with_per_step_rewards_raises_the_reward(tmp_path):
    # every digit is a rewarded step, so grpo_process gives each token the normalised reward of the digits at or
    # after it (not one advantage per completion as with outcome rewards)
    learns(tmp_path, "grpo_process")


@pytest.mark.slow
def test_dapo_raises_the_reward(tmp_path):
    learns(tmp_path, "dapo")


@pytest.mark.slow
def test_a_run_with_a_critic_and_adaptive_kl_resumes_exactly(tmp_path):
    extra = [
        "save_every=1",
        "algo.advantage=gae",
        "algo.kl.coef=0.05",
        "algo.kl.placement=reward",
        "algo.kl.estimator=k1",
        "algo.kl.target=0.01",
        "algo.epochs=2",
        "algo.mini_batches=2",
    ]
    straight = train(tiny_config(tmp_path, "name=straight", "steps=4", *extra), quiet=True)
    train(tiny_config(tmp_path, "name=split", "steps=2", *extra), quiet=True)
    resumed = train(tiny_config(tmp_path, "name=split", "steps=4", *extra), resume=True, quiet=True)

    def metrics(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        volatile = ("time/", "memory/", "eval/")
        return {r["step"]: {k: v for k, v in r.items() if not k.startswith(volatile)} for r in rows}

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
        own_task = [
            f"task.name={spec['task']['name']}",
            "task.path=null",
            "task.train_size=20",
            "task.eval_size=4",
            "env.max_turns=2",
        ]
    if str(spec.get("model", {}).get("device", "cpu")).startswith("cuda"):  # a GPU recipe's settings, on the CPU
        own_task += ["model.device=cpu", "engine.name=hf"]
    if "reward_model" in spec.get("rewards", {}).get(
        "components", {}
    ):  # a tiny reward model in place of the trained one
        from tests.helpers import tiny_hf_checkpoint

        scorer = tiny_hf_checkpoint(tmp_path / "rm", ["[PAD]", "[UNK]", "1", "2", "+", "="], "classifier", num_labels=1)
        from tests.helpers import TOY_REWARD

        own_task += [
            f"rewards.components={{{TOY_REWARD}: 1.0, reward_model: 0.5}}",
            f"rewards.options={{reward_model: {{path: {scorer}}}}}",
        ]
    cfg = load_config(
        recipe,
        tiny_overrides(
            tmp_path,
            "steps=2",
            "task.options={}",
            "eval.samples=1",
            "log_rollouts_every=0",
            "algo.overlong.buffer=0",
            *own_task,
        ),
    )
    run_dir = train(cfg, quiet=True)
    assert (run_dir / "adapter").is_dir()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    # Every logged number finite (a NaN is written as null). Learning: the tests above (every estimator and
    # loss raises a toy reward); with 2 steps on a random model some recipes see only equal rewards.
    for row in rows[1:]:
        bad = [k for k, v in row.items() if v is None or (isinstance(v, float) and not math.isfinite(v))]
        assert not bad, (row["step"], bad)
