"""Forgetting monitor: the KL estimators against exact KLs of a tiny autoregressive distribution, retention
deltas and KLs exactly zero when the policy is the base, forget/* metrics in a training run, the budget stop."""

import itertools
import json
import math

import pytest
import torch

from reasonrl.weights import weights_of
from reasonrl.algos.kl import kl_terms, sequence_sum
from reasonrl.engine import Completion
from reasonrl.engine.hf import HFEngine
from reasonrl.forgetting import ForgettingMonitor, make_monitor
from reasonrl.forgetting_measures import mean_and_se, over_budget, pack, retention_metrics, sequence_kls, text_chunks
from reasonrl.model import load_policy, reference, token_logprobs
from reasonrl.tasks import load_task
from reasonrl.tokenizer import ByteTokenizer
from reasonrl.train import train
from tests.helpers import tiny_config

# ---------------------------------------------------------------------------------------------------------
# A tiny autoregressive distribution: tokens 0, 1 and EOS=2; a sequence ends at EOS or after MAX_LEN tokens.
VOCAB, EOS, MAX_LEN = 3, 2, 3


def next_logits(prefix: tuple[int, ...], seed: int) -> torch.Tensor:
    """Fixed random next-token logits for each prefix (a different table per seed)."""
    code = sum((t + 1) * 4**i for i, t in enumerate(prefix))
    return torch.randn(VOCAB, generator=torch.Generator().manual_seed(seed * 1000 + code)) * 1.5


def all_sequences() -> list[tuple[int, ...]]:
    """Every complete sequence: EOS-terminated ones up to MAX_LEN, and the MAX_LEN-long ones without EOS."""
    out = []
    for length in range(1, MAX_LEN + 1):
        for body in itertools.product((0, 1), repeat=length - 1):
            out.append((*body, EOS))
        if length == MAX_LEN:
            out += list(itertools.product((0, 1), repeat=length))
    return out


def seq_logprob(y: tuple[int, ...], seed: int, temperature: float) -> float:
    return sum((next_logits(y[:t], seed) / temperature).log_softmax(-1)[y[t]].item() for t in range(len(y)))


def estimates(y: tuple[int, ...], temperature: float) -> tuple[float, float]:
    """(chain-rule KL, k1 log-ratio) of one sequence with p = table 1, q = table 2, through the pure functions."""
    logits_p = torch.stack([next_logits(y[:t], 1) for t in range(len(y))])[None]  # (1, T, V)
    logits_q = torch.stack([next_logits(y[:t], 2) for t in range(len(y))])[None]  # (1, T, V)
    token_kl, ratio = kl_terms(logits_p, logits_q, torch.tensor([y]), temperature)  # (1, T), (1, T)
    mask = torch.ones(1, len(y), dtype=torch.bool)
    return sequence_sum(token_kl, mask).item(), sequence_sum(ratio, mask).item()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_both_estimators_average_to_the_exact_sequence_kl(temperature):
    seqs = all_sequences()
    p = {y: math.exp(seq_logprob(y, 1, temperature)) for y in seqs}
    assert sum(p.values()) == pytest.approx(1.0, abs=1e-6)  # the enumeration is the whole distribution
    exact = sum(p[y] * (seq_logprob(y, 1, temperature) - seq_logprob(y, 2, temperature)) for y in seqs)
    assert exact > 0.05
    chain = sum(p[y] * estimates(y, temperature)[0] for y in seqs)
    k1 = sum(p[y] * estimates(y, temperature)[1] for y in seqs)
    assert chain == pytest.approx(exact, abs=1e-5) and k1 == pytest.approx(exact, abs=1e-5)


def test_monte_carlo_estimate_is_within_its_standard_error():
    seqs = all_sequences()
    p = torch.tensor([math.exp(seq_logprob(y, 1, 1.0)) for y in seqs])
    exact = sum(pi * (seq_logprob(y, 1, 1.0) - seq_logprob(y, 2, 1.0)) for pi, y in zip(p.tolist(), seqs))
    draws = torch.multinomial(p, 3000, replacement=True, generator=torch.Generator().manual_seed(0))
    table = {i: estimates(seqs[i], 1.0) for i in set(draws.tolist())}
    chain = torch.tensor([table[i][0] for i in draws.tolist()])
    mean, se = mean_and_se(chain)
    assert abs(mean - exact) < 4 * se and se < 0.05
    assert (chain >= 0).all()  # every chain-rule term is a KL


def test_single_token_kl_by_hand():
    logits_p = torch.tensor([[[0.0, math.log(3.0)]]])  # p = (0.25, 0.75)
    logits_q = torch.zeros(1, 1, 2)  # q = (0.5, 0.5)
    token_kl, ratio = kl_terms(logits_p, logits_q, torch.tensor([[1]]))
    assert token_kl.item() == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)  # 0.130812
    assert token_kl.item() == pytest.approx(0.130812, abs=1e-6)
    assert ratio.item() == pytest.approx(math.log(1.5), abs=1e-6)


def test_kl_terms_match_a_slow_loop_across_chunks():
    g = torch.Generator().manual_seed(0)
    logits_p, logits_q = torch.randn(2, 70, 7, generator=g), torch.randn(2, 70, 7, generator=g)  # (B, T, V)
    targets = torch.randint(0, 7, (2, 70), generator=g)  # (B, T)
    token_kl, ratio = kl_terms(logits_p, logits_q, targets, temperature=0.8)
    for b in range(2):
        for t in range(70):
            p = (logits_p[b, t] / 0.8).softmax(-1).tolist()
            q = (logits_q[b, t] / 0.8).softmax(-1).tolist()
            assert token_kl[b, t].item() == pytest.approx(sum(pv * math.log(pv / qv) for pv, qv in zip(p, q)), abs=1e-5)
            k = targets[b, t].item()
            assert ratio[b, t].item() == pytest.approx(math.log(p[k] / q[k]), abs=1e-5)
    assert kl_terms(logits_p, logits_p, targets)[0].abs().max().item() == 0.0


def test_small_pure_helpers():
    assert over_budget(0.5, None) is False and over_budget(0.5, 0.4) is True and over_budget(0.3, 0.4) is False
    assert retention_metrics({"text": -2.0, "a": 0.5}, {"text": -1.5, "a": 0.5}) == {
        "forget/text/value": -2.0,
        "forget/text/delta": -0.5,
        "forget/a/value": 0.5,
        "forget/a/delta": 0.0,
    }
    assert mean_and_se(torch.tensor([1.0, 3.0])) == pytest.approx((2.0, 1.0))
    samples = pack([[5, 6], [7]], [[Completion([8, 9], [0.0, 0.0], True)], [Completion([4], [0.0], False)]], 0)
    assert samples.tokens.tolist() == [[5, 6, 8, 9], [7, 4, 0, 0]]
    assert samples.mask.tolist() == [[False, True, True], [True, False, False]]  # mask[t]: tokens[t+1] sampled


# ---------------------------------------------------------------------------------------------------------
# The monitor on a tiny model


def monitor_config(tmp_path, *overrides):
    toy = tmp_path / "toy.jsonl"
    return tiny_config(
        tmp_path,
        "forget.enabled=true",
        f"forget.tasks=[{{name: jsonl, path: {toy}}}]",
        "forget.task_size=6",
        "forget.kl_prompts=3",
        "forget.kl_samples=2",
        *overrides,
    )


def build_monitor(cfg):
    policy, tok = load_policy(cfg.model, cfg.lora)
    engine = HFEngine(policy, tok, cfg.engine)
    return ForgettingMonitor(cfg, policy, tok, engine, load_task(cfg.task).eval), policy, engine


def perturb(policy) -> None:
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for name, p in policy.named_parameters():
            if p.requires_grad and ("lora_B" in name or "lora" not in name):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_deltas_and_kls_are_exactly_zero_when_the_policy_is_the_base(tmp_path):
    cfg = monitor_config(tmp_path)
    monitor, policy, engine = build_monitor(cfg)
    first, again = monitor.measure(0), monitor.measure(1)
    assert {"forget/jsonl:toy/value", "forget/text/value", "forget/kl_forward", "forget/kl_reverse"} <= set(again)
    for metrics in (first, again):
        assert all(metrics[k] == 0.0 for k in metrics if k.endswith("/delta") or "kl_" in k), metrics
    assert first["forget/text/value"] < 0
    perturb(policy)  # a non-zero adapter: now the policy differs from the base
    engine.update_weights(weights_of(policy, 1, device=None))
    moved = monitor.measure(2)
    assert moved["forget/kl_forward"] > 0 and moved["forget/kl_reverse"] > 0
    assert moved["forget/text/delta"] != 0.0


def test_kl_on_samples_matches_token_logprobs_of_policy_and_base(tmp_path):
    cfg = monitor_config(tmp_path)
    monitor, policy, engine = build_monitor(cfg)
    perturb(policy)
    samples = monitor.base_samples()
    chain, k1 = sequence_kls(policy, monitor.base, samples, 1.0, 2, forward=True)
    with torch.no_grad():
        logp = token_logprobs(policy, samples.tokens)  # (N, T)
        with reference(policy):
            ref_logp = token_logprobs(policy, samples.tokens)  # (N, T)
    assert torch.allclose(k1, ((ref_logp - logp) * samples.mask).sum(-1), atol=1e-5)
    assert (chain >= 0).all() and chain.sum() > 0


def test_full_fine_tuning_measures_against_a_frozen_copy(tmp_path):
    cfg = monitor_config(tmp_path, "lora.enabled=false", "forget.tasks=[]")
    monitor, policy, engine = build_monitor(cfg)
    assert monitor.measure(0)["forget/kl_forward"] == 0.0
    perturb(policy)
    engine.update_weights(weights_of(policy, 1, device=None))
    assert monitor.measure(1)["forget/kl_forward"] > 0


def test_bad_text_source_and_duplicate_suites_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="forget.text"):
        text_chunks(str(tmp_path / "missing.txt"), ByteTokenizer(), 16)
    assert text_chunks("bundled", ByteTokenizer(), 128).shape[1] == 128
    with pytest.raises(ValueError, match="twice"):
        tiny_config(tmp_path, "forget.tasks=[reasoning_gym:leg_counting, reasoning_gym:leg_counting]")
    with pytest.raises(ValueError, match="kl_budget"):
        tiny_config(tmp_path, "forget.kl_budget=0")


def test_disabled_monitor_measures_nothing(tmp_path):
    monitor = make_monitor(tiny_config(tmp_path), None, None, None, [])
    assert monitor.measure(0) == {} and monitor.stop is False and monitor.finish() == {}


def test_training_logs_forget_metrics_at_every_evaluation(tmp_path):
    run_dir = train(monitor_config(tmp_path, "steps=2", "eval.every=1"), quiet=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for m in metrics:
        assert {"forget/text/delta", "forget/jsonl:toy/delta", "forget/kl_forward", "forget/kl_reverse"} <= set(m)
    assert metrics[0]["forget/text/delta"] == 0.0 and metrics[0]["forget/kl_forward"] == 0.0
    assert metrics[2]["forget/kl_forward"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["forget"]["last"]["forget/kl_forward"] == metrics[2]["forget/kl_forward"]


def test_budget_stop_ends_the_run_and_keeps_the_best_adapter_within_budget(tmp_path):
    from safetensors.torch import load_file

    cfg = monitor_config(
        tmp_path, "steps=6", "eval.every=1", "forget.kl_budget=1e-6", "forget.on_budget=stop", "forget.tasks=[]"
    )
    run_dir = train(cfg, quiet=True)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1] and metrics[1]["forget/over_budget"] == 1.0
    assert (run_dir / "checkpoints" / "step_000001").is_dir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["forget"]["stopped"] and summary["forget"]["kept_step"] == 0
    kept = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    last = load_file(str(run_dir / "checkpoints" / "step_000001" / "adapter" / "adapter_model.safetensors"))
    lora_b = [k for k in kept if "lora_B" in k]
    assert lora_b and all(kept[k].abs().max() == 0 for k in lora_b)  # the step-0 adapter (B = 0)
    assert any(last[k].abs().max() > 0 for k in lora_b)


def test_eval_cli_prints_retention_and_kls_against_the_base(capsys, tmp_path):
    from reasonrl.cli import main
    from tests.helpers import tiny_overrides

    main(["eval", *tiny_overrides(tmp_path, "forget.enabled=true", "forget.kl_prompts=2", "forget.kl_samples=2")])
    out = capsys.readouterr().out
    assert "forgetting vs the base model" in out and "KL(base||policy) 0.0000" in out and "text" in out


def test_a_resumed_run_measures_deltas_from_the_original_step_0(tmp_path):
    extra = ["eval.every=1", "save_every=1", "forget.tasks=[]"]
    straight = train(monitor_config(tmp_path, "name=straight", "steps=2", *extra), quiet=True)
    train(monitor_config(tmp_path, "name=split", "steps=1", *extra), quiet=True)
    resumed = train(monitor_config(tmp_path, "name=split", "steps=2", *extra), resume=True, quiet=True)

    def last(run_dir):
        return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])

    want, got = last(straight), last(resumed)
    assert want["step"] == got["step"] == 2 and want["forget/text/delta"] != 0.0
    for key in ("forget/text/delta", "forget/kl_forward", "forget/kl_reverse"):
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


def test_sft_logs_forget_metrics_at_every_evaluation(tmp_path):
    """SFT is the offline side of the RL's Razor comparison: it logs the same forget/* metrics as train."""
    from reasonrl.sft import sft

    run_dir = sft(
        monitor_config(tmp_path, "sft.steps=2", "eval.every=1", "sft.batch_tokens=512", "sft.seq_len=256"), quiet=True
    )
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    for m in metrics:
        assert {"forget/text/delta", "forget/jsonl:toy/delta", "forget/kl_forward", "forget/kl_reverse"} <= set(m)
    assert metrics[0]["forget/kl_forward"] == 0.0 and metrics[-1]["forget/kl_forward"] != 0.0
