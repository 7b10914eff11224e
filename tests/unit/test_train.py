"""The loop on a tiny model: masks, one full step, LoRA leaves the base untouched, files on disk."""

import json

import pytest
import torch

from reasonrl.config import LoraConfig, ModelConfig
from reasonrl.engine import SamplingParams
from reasonrl.engine.hf import HFEngine
from reasonrl.config import EngineConfig
from reasonrl.model import load_policy
from reasonrl.roles import prompts_for_step
from reasonrl.train import train
from reasonrl.types import Example, collate
from tests.helpers import tiny_config


def test_rollout_masks_prompt_false_and_sampled_true(tiny, tmp_path):
    from reasonrl.envs import EnvContext, Environment
    from reasonrl.rewards.compose import RewardComposer
    from reasonrl.rollout import rollout

    model, tok = tiny
    cfg = tiny_config(tmp_path)
    env = Environment("single_turn", EnvContext(rewards=RewardComposer(cfg.rewards)))
    examples = [Example(id=str(i), prompt=[{"role": "user", "content": f"q{i}"}], answer="1") for i in range(2)]
    try:
        trajs = rollout(
            env, HFEngine(model, tok, EngineConfig()), tok, examples, n=3, params=SamplingParams(6, 1.0), seed=0
        )
    finally:
        env.close()
    assert [t.group for t in trajs] == [0, 0, 0, 1, 1, 1]
    for t in trajs:
        prompt = tok.apply_chat_template(t.example.prompt)
        assert t.tokens[: len(prompt)] == prompt
        assert t.mask == [False] * len(prompt) + [True] * (len(t.tokens) - len(prompt))
        assert all(lp == 0.0 for lp, m in zip(t.sampler_logp, t.mask) if not m)
    batch = collate(trajs, tok.pad_token_id, group_size=3)
    assert batch.mask.shape == batch.sampler_logp.shape == (6, batch.tokens.shape[1] - 1)
    assert batch.mask.sum().item() == sum(t.completion_tokens for t in trajs)


def test_prompts_for_step_is_a_deterministic_epoch_shuffle():
    train_set = [Example(id=str(i), prompt=[]) for i in range(10)]
    seen = [e.id for s in range(5) for e in prompts_for_step(train_set, 2, s, seed=0)]
    assert sorted(seen) == [str(i) for i in range(10)]  # one epoch covers every example once
    assert prompts_for_step(train_set, 2, 3, seed=0) == prompts_for_step(train_set, 2, 3, seed=0)


def test_one_full_step_writes_the_run_and_keeps_base_weights(tmp_path):
    cfg = tiny_config(tmp_path, "steps=2", "save_every=1", "algo.kl.coef=0.05")
    base, _ = load_policy(ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(enabled=False))
    run_dir = train(cfg, quiet=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert "loss/kl" in metrics[1] and "rollout/reward" in metrics[1] and "time/generate" in metrics[1]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "rollouts" / "step_000002.jsonl").is_file()
    for step in ("step_000001", "step_000002"):
        ckpt = run_dir / "checkpoints" / step
        assert (ckpt / "adapter" / "adapter_model.safetensors").is_file() and (ckpt / "optim.pt").is_file()
    trained, _ = load_policy(
        ModelConfig(path="tiny:llama", dtype="float32", adapter=str(run_dir / "adapter")), LoraConfig()
    )
    base_state = base.state_dict()
    changed = 0
    for name, p in trained.named_parameters():
        if "lora_" in name:  # B starts at zero: any non-zero value is training
            changed += int("lora_B" in name and not torch.equal(p, torch.zeros_like(p)))
        else:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base_state[key]), f"base weight {key} changed"
    assert changed > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["before"]["problems"] == 8


def test_reference_is_never_run_without_kl(tmp_path, monkeypatch):
    import reasonrl.update

    def forbidden(model):
        raise AssertionError("the reference policy ran although algo.kl.coef=0")

    monkeypatch.setattr(reasonrl.update, "reference", forbidden)
    train(tiny_config(tmp_path, "steps=1", "algo.kl.coef=0"), quiet=True)
    with pytest.raises(AssertionError, match="reference policy ran"):
        train(tiny_config(tmp_path, "steps=1", "algo.kl.coef=0.1", "name=kl"), quiet=True)


def test_every_algorithm_knob_runs_a_full_step(tmp_path):
    cfg = tiny_config(
        tmp_path,
        "steps=2",
        "save_every=1",
        "algo.advantage=gae",
        "algo.kl.coef=0.05",
        "algo.kl.placement=reward",
        "algo.kl.estimator=k1",
        "algo.kl.target=0.01",
        "algo.epochs=2",
        "algo.mini_batches=2",
        "algo.entropy_coef=0.01",
        "algo.tis_cap=2.0",
        "algo.overlong.buffer=4",
        "algo.dynamic_sampling.enabled=true",
        "algo.loss.clip_ratio_c=3.0",
    )
    run_dir = train(cfg, quiet=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for key in (
        "critic/value_loss",
        "critic/grad_norm",
        "loss/entropy",
        "loss/tis_weight",
        "loss/kl",
        "loss/kl_coef",
        "loss/dual_clip_frac",
        "sampling/tries",
        "sampling/degenerate_groups",
        "reward/overlong",
    ):
        assert key in metrics[2], key
    assert metrics[1]["loss/kl_coef"] == 0.05 and metrics[2]["loss/kl_coef"] != 0.05  # adaptive
    ckpt = run_dir / "checkpoints" / "step_000002"
    assert (ckpt / "critic" / "adapter_model.safetensors").is_file() and (ckpt / "critic.pt").is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["kl_coef"] != 0.05


def test_collate_places_step_rewards_at_step_ends_and_overlong_filtering_drops_truncated_rows():
    from reasonrl.types import Trajectory
    from reasonrl.update import drop_truncated

    ex = Example(id="0", prompt=[])
    single = Trajectory(
        example=ex,
        group=0,
        tokens=[7, 8, 9, 10],
        mask=[False, True, True, True],
        sampler_logp=[0.0] * 4,
        completion="",
        reward=0.5,
        truncated=True,
    )
    steps = Trajectory(
        example=ex,
        group=0,
        tokens=[7, 8, 9, 10, 11],
        mask=[False, True, True, False, True],
        sampler_logp=[0.0] * 5,
        completion="",
        reward=1.0,
        step_rewards=[0.2, 0.8],
        step_token_ends=[2, 4],
    )
    batch = collate([single, steps], pad_id=0, group_size=2)
    assert batch.token_rewards.tolist() == [[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]]
    assert batch.step_ends.tolist() == [[False, False, True, False], [False, True, False, True]]
    assert torch.allclose(batch.step_rewards, torch.tensor([[0.0, 0.0, 0.5, 0.0], [0.0, 0.2, 0.0, 0.8]]))
    kept = drop_truncated(batch)
    assert kept.size == 1 and kept.rewards.tolist() == [1.0]
    bad = Trajectory(
        example=ex,
        group=0,
        tokens=[7, 8, 9],
        mask=[False, True, True],
        sampler_logp=[0.0] * 3,
        completion="",
        step_rewards=[0.2, 0.8],
        step_token_ends=[0, 2],
    )
    with pytest.raises(ValueError, match="must end on a sampled token"):
        collate([bad, bad], pad_id=0, group_size=2)
