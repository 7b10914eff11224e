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
            out.append(Trajectory(example=Example(id=str(g), prompt=[]), group=g, tokens=prompt + completion,
                                  mask=[False] * len(prompt) + [True] * len(completion),
                                  sampler_logp=[0.0] * (len(prompt) + len(completion)), completion="",
                                  reward=float(i % 2) + 0.1 * i))
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
