"""Correctness guard for the optimised paths: the shared-prompt update gives the same loss, metrics and new
weights as the plain per-sequence update on a tiny model (the log-prob equality itself is in test_model.py)."""

import dataclasses

import torch

from reasonrl.algos import ADVANTAGES, POLICY_LOSSES
from reasonrl.config import LoraConfig, ModelConfig
from reasonrl.model import load_policy
from reasonrl.types import Example, Trajectory, collate
from reasonrl.update import make_optimizer, update
from tests.helpers import tiny_config


def grouped_trajectories(tok, group_size=4):
    torch.manual_seed(0)
    out = []
    for g, question in enumerate(("1+1=", "what is twelve?")):
        prompt = tok.apply_chat_template([{"role": "user", "content": question}])
        for i in range(group_size):
            completion = torch.randint(3, tok.vocab_size, (3 + 2 * i,)).tolist()
            out.append(
                Trajectory(
                    example=Example(id=str(g), prompt=[]),
                    group=g,
                    tokens=prompt + completion,
                    mask=[False] * len(prompt) + [True] * len(completion),
                    sampler_logp=[0.0] * (len(prompt) + len(completion)),
                    completion="",
                    reward=float(i % 2) + 0.1 * i,
                )
            )
    return out


def test_shared_prompt_update_equals_plain_update(tmp_path):
    cfg = tiny_config(tmp_path, "algo.kl.coef=0", "optim.micro_batch_size=3")
    results = []
    for shared in (True, False):
        torch.manual_seed(1)  # same LoRA initialisation for both policies
        policy, tok = load_policy(ModelConfig(path="tiny:llama", dtype="float32"), LoraConfig(rank=4))
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
        batch = collate(grouped_trajectories(tok), tok.pad_token_id, group_size=4)
        if not shared:
            batch = dataclasses.replace(batch, groups=None)  # no groups: every row runs its own prompt
        batch.adv = ADVANTAGES.get("grpo")(batch, cfg.algo)
        optimizer, _ = make_optimizer(policy, cfg)
        metrics = update(policy, optimizer, batch, POLICY_LOSSES.get("ppo_clip"), cfg)
        weights = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
        results.append((metrics, weights))
    (shared_metrics, shared_weights), (plain_metrics, plain_weights) = results
    assert abs(shared_metrics["loss/pg"] - plain_metrics["loss/pg"]) < 1e-5
    assert abs(shared_metrics["optim/grad_norm"] - plain_metrics["optim/grad_norm"]) < 1e-4
    for name in shared_weights:
        assert torch.allclose(shared_weights[name], plain_weights[name], atol=1e-5), name


def test_bf16_adapter_compute_matches_fp32_adapter_compute(monkeypatch):
    """With a bf16 base the LoRA branch runs in bf16 under autocast (no per-layer fp32 round trips). Against an
    all-fp32 reference its log-probs and gradients are as close as peft's default path (fp32 adapter on the
    bf16 base) is: the bf16 base weights, not the adapter compute, set the error. Adapter weights (the
    optimizer's master copy) stay fp32."""
    import contextlib

    import reasonrl.model as model_module
    from reasonrl.model import policy_logprobs

    def run(dtype: str, fast: bool):
        torch.manual_seed(1)
        policy, tok = load_policy(ModelConfig(path="tiny:llama", dtype=dtype), LoraConfig(rank=4))
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
        lora = [p for n, p in policy.named_parameters() if "lora_" in n]
        assert lora and all(p.dtype == torch.float32 for p in lora)
        batch = collate(grouped_trajectories(tok), tok.pad_token_id, group_size=4)
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(model_module, "half_precision_adapter", lambda model: contextlib.nullcontext())
            logp = policy_logprobs(policy, batch.tokens, batch.mask, batch.groups)  # (B, T)
        (logp * batch.mask).sum().backward()
        return logp.detach(), torch.cat([p.grad.flatten() for p in lora])

    ref_logp, ref_grad = run("float32", fast=False)
    fast_logp, fast_grad = run("bfloat16", fast=True)
    slow_logp, slow_grad = run("bfloat16", fast=False)
    assert fast_logp.dtype == torch.float32 and (fast_logp != slow_logp).any()  # the paths do differ
    err_fast, err_slow = (fast_logp - ref_logp).abs().mean(), (slow_logp - ref_logp).abs().mean()
    print(f"mean |logp - fp32|: bf16 adapter {err_fast:.4f}, fp32 adapter {err_slow:.4f}")
    assert err_fast < 1.5 * err_slow + 1e-3, (err_fast, err_slow)
    cos = torch.nn.functional.cosine_similarity
    assert (
        cos(fast_grad, ref_grad, dim=0) > 0.98
        and cos(fast_grad, ref_grad, dim=0) > cos(slow_grad, ref_grad, dim=0) - 0.01
    )


def test_token_budget_micro_batches_cover_the_batch_within_the_budget():
    """optim.micro_batch_tokens: consecutive row ranges, each within both caps (a row longer than the budget
    goes alone), covering every row once."""
    from reasonrl.types import Batch
    from reasonrl.update import row_slices

    lengths = [3, 10, 4, 4, 12, 2, 2, 2]
    mask = torch.zeros(len(lengths), 13, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, 1:n] = True  # row i is trimmed to length n
    batch = Batch(
        tokens=torch.zeros(8, 14, dtype=torch.long),
        mask=mask,
        sampler_logp=torch.zeros(8, 13),
        rewards=torch.zeros(8),
        group_size=2,
    )
    slices = row_slices(batch, size=4, max_tokens=24)
    assert [r for s in slices for r in range(8)[s]] == list(range(8))
    for s in slices:
        rows = lengths[s]
        assert len(rows) <= 4 and (len(rows) == 1 or len(rows) * max(rows) <= 24)
    assert slices == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    assert row_slices(batch, size=4, max_tokens=8) == [slice(0, 1), slice(1, 2), slice(2, 4), slice(4, 5), slice(5, 8)]
    assert row_slices(batch, size=3) == [slice(0, 3), slice(3, 6), slice(6, 8)]
