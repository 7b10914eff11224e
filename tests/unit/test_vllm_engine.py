"""The vllm engine against the hf engine and the learner, on the CPU build of vLLM (`make test` runs these in
.venv-vllm, made by scripts/setup_vllm.sh; without vLLM they skip). On the bundled model in float32: greedy
completions equal the hf engine's, sampler log-probs equal the trainer's (so on-policy ratios start at 1), LoRA
and full updates are served at once, and the sync check catches every sabotage."""

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="needs vLLM: bash scripts/setup_vllm.sh, then .venv-vllm/bin/python -m pytest",
    ),
]

from reasonrl.config import EngineConfig, LoraConfig, ModelConfig, load_config  # noqa: E402
from reasonrl.engine import ENGINES, SamplingParams  # noqa: E402
from reasonrl.model import load_policy, policy_logprobs  # noqa: E402
from reasonrl.tokenizer import encode_chat  # noqa: E402
from reasonrl.weights import perturbed, weights_of  # noqa: E402

BUNDLED = ModelConfig(path="bundled:smollm2-135m-instruct", dtype="float32")
QUESTIONS = ("What is 7 + 5?", "Name a colour.", "2*3=")


@pytest.fixture(scope="module")
def engines():
    """A trained-looking LoRA policy (B moved off zero), and both engines synced to it."""
    lora = LoraConfig(rank=8)
    policy, tok = load_policy(BUNDLED, lora)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02, generator=gen)
    vllm = ENGINES.get("vllm")(BUNDLED, lora, EngineConfig(), tok)
    hf = ENGINES.get("hf")(BUNDLED, lora, EngineConfig(), tok)
    for engine in (vllm, hf):
        engine.update_weights(weights_of(policy, 1))
    yield policy, tok, vllm, hf
    vllm.close()


def prompts(tok):
    return [encode_chat(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]


def max_gap(policy, prompt, completions, temperature):
    worst = 0.0
    for c in completions:
        tokens = torch.tensor([prompt + c.token_ids])
        with torch.no_grad():
            want = policy_logprobs(
                policy, tokens, torch.ones(1, tokens.shape[1] - 1, dtype=torch.bool), None, temperature
            )[0, len(prompt) - 1 :]
        worst = max(worst, float((want - torch.tensor(c.logprobs)).abs().max()))
    return worst


def test_greedy_completions_equal_the_hf_engines(engines):
    policy, tok, vllm, hf = engines
    params = SamplingParams(max_new_tokens=32, temperature=0.0)
    got, want = vllm.generate(prompts(tok), params, 1, 0), hf.generate(prompts(tok), params, 1, 0)
    assert [g[0].token_ids for g in got] == [w[0].token_ids for w in want]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_are_the_tempered_ones_the_trainer_computes(engines, temperature):
    policy, tok, vllm, _ = engines
    out = vllm.generate(prompts(tok), SamplingParams(max_new_tokens=24, temperature=temperature), 4, 5)
    gap = max(max_gap(policy, p, group, temperature) for p, group in zip(prompts(tok), out))
    print(f"temperature {temperature}: max |sampler - trainer| log-prob {gap:.2e}")
    assert gap < 1e-3  # importance ratios exp(gap) start at 1 within 0.1%
    assert all(len(c.token_ids) == len(c.logprobs) >= 1 for group in out for c in group)


def test_adapter_off_samples_the_base_model_like_the_hf_engine(engines):
    """generate(adapter=False) (the forgetting monitor's base samples) in both engines: greedy completions of the
    base agree, differ from the adapted policy's, and the adapter is served again right after."""
    policy, tok, vllm, hf = engines
    params = SamplingParams(max_new_tokens=32, temperature=0.0)
    base = [g[0].token_ids for g in vllm.generate(prompts(tok), params, 1, 0, adapter=False)]
    assert base == [g[0].token_ids for g in hf.generate(prompts(tok), params, 1, 0, adapter=False)]
    adapted = [g[0].token_ids for g in vllm.generate(prompts(tok), params, 1, 0)]
    assert adapted == [g[0].token_ids for g in hf.generate(prompts(tok), params, 1, 0)] and adapted != base


def test_each_lora_update_is_served_at_once_and_a_perturbed_one_shows(engines):
    policy, tok, vllm, _ = engines
    p = prompts(tok)[:1]
    params = SamplingParams(max_new_tokens=16, temperature=1.0)
    update = weights_of(policy, 1)
    vllm.update_weights(perturbed(update, 0.2, version=2))  # one layer's B moved: the engine must show it
    assert vllm.version == 2 and max_gap(policy, p[0], vllm.generate(p, params, 2, 3)[0], 1.0) > 1e-2
    vllm.update_weights(replace(update, version=3))  # fp32 agreement is ~1e-4 (engine_bench: 6.5e-05)
    assert vllm.version == 3 and max_gap(policy, p[0], vllm.generate(p, params, 2, 3)[0], 1.0) < 1e-3


def full_fine_tuning_round_trip():
    lora = LoraConfig(enabled=False)
    policy, tok = load_policy(BUNDLED, lora)
    with torch.no_grad():
        policy.model.layers[3].mlp.down_proj.weight.mul_(1.5)  # a trained layer
    vllm = ENGINES.get("vllm")(BUNDLED, lora, EngineConfig(), tok)
    try:
        p = prompts(tok)
        params = SamplingParams(max_new_tokens=12, temperature=1.0)
        assert max(max_gap(policy, q, g, 1.0) for q, g in zip(p, vllm.generate(p, params, 1, 0))) > 1e-2
        vllm.update_weights(weights_of(policy, 1))
        assert max(max_gap(policy, q, g, 1.0) for q, g in zip(p, vllm.generate(p, params, 1, 0))) < 1e-3
    finally:
        vllm.close()


@pytest.mark.gpu
def test_full_fine_tuning_updates_go_through_load_weights():
    full_fine_tuning_round_trip()


def test_full_fine_tuning_on_the_cpu_build_is_refused_with_the_way_out():
    if torch.cuda.is_available():
        pytest.skip("a GPU runs it (test_full_fine_tuning_updates_go_through_load_weights)")
    with pytest.raises(ValueError, match="needs a GPU.*use engine.name=hf on a CPU"):
        full_fine_tuning_round_trip()


def test_the_sync_check_catches_sabotage_of_a_vllm_worker(tmp_path):
    from reasonrl.roles import Learner, RolloutWorker
    from reasonrl.sync_check import SyncCheck, SyncError
    from reasonrl.tasks import load_task

    cfg = load_config(
        "recipes/quickstart.yaml", [f"output_dir={tmp_path}", "model.dtype=float32", "engine.name=vllm", "lora.rank=8"]
    )
    learner = Learner(cfg)
    worker = RolloutWorker(cfg, learner.tokenizer, load_task(cfg.task).train[:4])
    try:
        # a longer probe than a run's default (1 x 2 tokens): a one-layer perturbation must show whatever is sampled
        check = SyncCheck(learner.tokenizer, worker.train, "stop", None, "float32", probes=2, tokens=16)
        first = learner.weights()
        worker.update_weights(first)
        assert check.check(0, worker, learner)["sync/logp_gap"] < 1e-3
        with torch.no_grad():
            for name, p in learner.policy.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05)
        learner.version = 1
        update = learner.weights()
        for bad in (None, replace(update, version=2), perturbed(update, 0.2), replace(first, version=1)):
            if bad is not None:
                worker.update_weights(bad)
            with pytest.raises(SyncError, match="after step 1"):
                check.check(1, worker, learner)
            worker.update_weights(update)
            assert check.check(1, worker, learner)["sync/logp_gap"] < 1e-3
    finally:
        worker.close()


@pytest.mark.slow
def test_grpo_with_the_vllm_engine_learns_the_toy_task(tmp_path):
    from tests.learning import SCENARIOS

    scenario = SCENARIOS["vllm:toy_grpo"]
    got = scenario.measure(tmp_path)
    print(f"vllm engine, toy task: first 5 steps {got['first']:.3f}, last 5 steps {got['last']:.3f}")
    scenario.check(got)  # threshold and its margin over seeds: tests/learning.py
    rows = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["sync/logp_gap"] for r in rows[1:]) < 1e-3
