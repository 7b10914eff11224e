"""The seam between sampling and learning: WeightUpdate is a value (it survives pickling and rebuilds the policy
in an engine that shares nothing with the learner), and the sync check catches every way a sync can go wrong,
at the step it happens."""

import io
import json
from dataclasses import replace

import pytest
import torch

from reasonrl.config import EngineConfig, HFConfig, LoraConfig, ModelConfig
from reasonrl.engine import ENGINES, SamplingParams
from reasonrl.model import load_policy, policy_logprobs
from reasonrl.roles import Learner, RolloutWorker
from reasonrl.sync_check import SyncCheck, SyncError
from reasonrl.tasks import load_task
from reasonrl.train import train
from reasonrl.weights import WeightUpdate, perturbed, weights_of
from tests.helpers import tiny_config, tiny_overrides

PROMPTS = [[1, 5, 9], [1, 7]]


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Move the trainable weights away from their start, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))


def engine_gap(engine, policy: torch.nn.Module) -> float:
    """Largest |sampler log-prob - policy log-prob| over continuations the engine samples at temperature 1."""
    worst = 0.0
    for prompt, group in zip(PROMPTS, engine.generate(PROMPTS, SamplingParams(8, 1.0), n=2, seed=0)):
        for c in group:
            tokens = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                want = policy_logprobs(policy, tokens, torch.ones(1, tokens.shape[1] - 1, dtype=torch.bool), None, 1.0)[
                    0, len(prompt) - 1 :
                ]
            worst = max(worst, float((want - torch.tensor(c.logprobs)).abs().max()))
    return worst


@pytest.mark.parametrize(
    "lora,merge", [(True, True), (True, False), (False, True)], ids=["lora-merged", "lora-unmerged", "full"]
)
def test_a_pickled_weight_update_rebuilds_the_policy_in_an_engine_of_its_own(lora, merge):
    model_cfg, lora_cfg = ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(rank=4, enabled=lora)
    policy, tok = load_policy(model_cfg, lora_cfg)
    randomise(policy)
    engine = ENGINES.get("hf")(model_cfg, lora_cfg, EngineConfig(hf=HFConfig(merge_lora=merge)), tok)  # shares nothing
    assert engine_gap(engine, policy) > 1e-2  # not yet synced
    buffer = io.BytesIO()
    torch.save(weights_of(policy, 7), buffer)  # what crosses a process boundary
    update = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert isinstance(update, WeightUpdate) and update.kind == ("lora" if lora else "full")
    engine.update_weights(update)
    assert engine.version == 7
    assert engine_gap(engine, policy) < 1e-4  # it samples from the learner's policy


def sabotages(update: WeightUpdate, last: WeightUpdate | None) -> dict[str, WeightUpdate | None]:
    return {
        "skipped": None,
        "wrong version": replace(update, version=update.version + 1),
        "one tensor perturbed": perturbed(update, 0.05),
        "stale weights": replace(last, version=update.version),
    }


@pytest.mark.parametrize(
    "lora,merge", [(True, True), (True, False), (False, True)], ids=["lora-merged", "lora-unmerged", "full"]
)
def test_the_sync_check_catches_every_sabotage_at_that_step(tmp_path, lora, merge):
    cfg = tiny_config(tmp_path, f"lora.enabled={str(lora).lower()}", f"engine.hf.merge_lora={str(merge).lower()}")
    learner = Learner(cfg)
    task = load_task(cfg.task)
    worker = RolloutWorker(cfg, learner.tokenizer, task.train)  # its own engine, as in another process
    check = SyncCheck(learner.tokenizer, task.train, "stop", None, cfg.model.dtype)
    first = learner.weights()
    worker.update_weights(first)
    check.check(0, worker, learner)
    randomise(learner.policy)  # a training step
    learner.version += 1
    update = learner.weights()
    for name, bad in sabotages(update, first).items():
        if bad is not None:
            worker.update_weights(bad)
        with pytest.raises(SyncError, match=r"weight sync failed after step 1 \(policy version 1\)") as e:
            check.check(1, worker, learner)
        print(f"{name}: {e.value}")
        worker.update_weights(update)  # the real one passes
        assert check.check(1, worker, learner)["sync/logp_gap"] < 1e-4
    worker.close()


def test_a_run_whose_sync_fails_stops_at_that_step_with_its_checkpoints_intact(tmp_path, monkeypatch, capsys):
    real = RolloutWorker.update_weights

    def skip_version_3(self, update):
        if update.version != 3:
            real(self, update)

    monkeypatch.setattr(RolloutWorker, "update_weights", skip_version_3)
    from reasonrl.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", *tiny_overrides(tmp_path, "steps=6", "save_every=1"), "--quiet"])
    err = capsys.readouterr().err
    assert (
        e.value.code == 1
        and err.startswith("error: weight sync failed after step 3 (policy version 3): the engine serves version 2")
        and err.count("\n") == 1
    ), err
    run = tmp_path / "runs" / "tiny"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000001", "step_000002"]
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_warn_goes_on_and_off_skips_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(RolloutWorker, "update_weights", lambda self, update: None)  # never syncs
    with pytest.raises(SyncError):
        train(tiny_config(tmp_path, "steps=1", "name=stop"), quiet=True)
    for mode in ("warn", "off"):
        run = train(tiny_config(tmp_path, "steps=2", f"name=verify-{mode}", f"engine.verify={mode}"), quiet=True)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert ("sync/logp_gap" in rows[-1]) == (mode == "warn")


def test_the_check_costs_little_and_its_time_is_logged(tmp_path):
    run = train(tiny_config(tmp_path, "steps=3"), quiet=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][1:]
    assert all(r["sync/logp_gap"] < 1e-4 and r["time/verify"] < 0.5 * r["time/step"] for r in rows)


def test_kl_coefficient_has_one_owner_and_resumes(tmp_path):
    cfg = tiny_config(
        tmp_path, "algo.kl.coef=0.05", "algo.kl.target=0.01", "algo.kl.placement=reward", "algo.kl.estimator=k1"
    )
    learner = Learner(cfg)
    assert (learner.kl.coef, learner.kl.estimator, learner.kl.placement) == (0.05, "k1", "reward")
    learner.kl.update(0.02, 16)
    other = Learner(cfg)
    other.load_state_dict(learner.state_dict())
    assert other.kl.coef == learner.kl.coef != 0.05


def greedy(engine, **kw) -> list[list[int]]:
    return [g[0].token_ids for g in engine.generate(PROMPTS, SamplingParams(8, 0.0), n=1, seed=0, **kw)]


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "unmerged"])
def test_adapter_off_samples_the_base_and_leaves_the_policy_as_it_was(merge):
    """The forgetting monitor samples the base through the run's engine (generate(adapter=False)); after it the
    engine serves the trained policy exactly as before."""
    model_cfg, lora_cfg = ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(rank=4)
    policy, tok = load_policy(model_cfg, lora_cfg)
    base = ENGINES.get("hf")(model_cfg, replace(lora_cfg, enabled=False), EngineConfig(), tok)
    engine = ENGINES.get("hf")(model_cfg, lora_cfg, EngineConfig(hf=HFConfig(merge_lora=merge)), tok)
    randomise(policy)
    engine.update_weights(weights_of(policy, 1))
    trained = engine.generate(PROMPTS, SamplingParams(8, 1.0), n=2, seed=3)
    assert greedy(engine) != greedy(base)  # the adapter changes what is sampled
    assert greedy(engine, adapter=False) == greedy(base)
    for got, want in zip(
        engine.generate(PROMPTS, SamplingParams(8, 1.0), n=2, seed=3, adapter=False),
        base.generate(PROMPTS, SamplingParams(8, 1.0), n=2, seed=3),
    ):
        for a, b in zip(got, want):
            assert a.token_ids == b.token_ids and max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-4
    again = engine.generate(PROMPTS, SamplingParams(8, 1.0), n=2, seed=3)
    assert [[(c.token_ids, c.logprobs) for c in g] for g in again] == [
        [(c.token_ids, c.logprobs) for c in g] for g in trained
    ]  # bit for bit


def test_adapter_off_is_refused_without_lora():
    model_cfg = ModelConfig(path="tiny:llama", dtype="float32")
    policy, tok = load_policy(model_cfg, LoraConfig(enabled=False))
    engine = ENGINES.get("hf")(model_cfg, LoraConfig(enabled=False), EngineConfig(), tok)
    with pytest.raises(ValueError, match=r"adapter=False\) needs a LoRA policy"):
        engine.generate(PROMPTS, SamplingParams(4, 0.0), n=1, seed=0, adapter=False)


def test_a_round_split_over_workers_samples_what_one_worker_samples(tmp_path):
    """Per-prompt seeds: prompts 0-1 on one worker and 2-3 on another give the trajectories of one worker
    doing all four (tokens, rewards, group numbers), whatever the engine's batch."""
    cfg = tiny_config(tmp_path)
    learner = Learner(cfg)
    task = load_task(cfg.task)
    one = RolloutWorker(cfg, learner.tokenizer, task.train, shared=learner.policy)
    small = RolloutWorker(
        replace(cfg, engine=replace(cfg.engine, batch_size=4)), learner.tokenizer, task.train, shared=learner.policy
    )
    try:
        for w in (one, small):
            w.update_weights(learner.weights(device=None))
        whole, _ = one.sample_round(3, 0, 4)
        parts = small.sample_round(3, 0, 4, (0, 2))[0] + small.sample_round(3, 0, 4, (2, 4))[0]
        assert [t.tokens for t in whole] == [t.tokens for t in parts]
        assert [t.reward for t in whole] == [t.reward for t in parts]
        assert [t.group for t in parts] == [g for g in range(4) for _ in range(4)]
        assert len({tuple(t.tokens) for t in whole}) > 4  # the samples differ: not one stream repeated
        assert all(t.info["version"] == 0 for t in parts)
        other, _ = one.sample_round(4, 0, 4)
        assert [t.tokens for t in other] != [t.tokens for t in whole]  # another step, other samples
    finally:
        one.close()
        small.close()
