"""Log-prob paths: the shared-prompt forward equals the plain forward (values and gradients); LoRA reference."""

import pytest
import torch

from reasonrl.model import (
    completion_spans,
    load_policy,
    policy_logprobs,
    reference,
    shared_prompt_logprobs,
    token_logprobs,
)


def grouped_batch(tok, group_size=3):
    """Two prompts of different lengths, group_size completions each of different lengths, right-padded."""
    torch.manual_seed(0)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}]) for q in ("1+1=", "what is twelve?")]
    rows, masks = [], []
    for p in prompts:
        for g in range(group_size):
            completion = torch.randint(3, tok.vocab_size, (2 + 3 * g,)).tolist()
            rows.append(p + completion)
            masks.append([False] * len(p) + [True] * len(completion))
    width = max(map(len, rows))
    tokens = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([m + [False] * (width - len(m)) for m in masks])[:, 1:]
    groups = torch.arange(len(prompts)).repeat_interleave(group_size)
    return tokens, mask, groups


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_logprobs_equal_plain_values_and_gradients(tiny, temperature):
    model, tok = tiny
    with torch.no_grad():  # a non-zero adapter, so every LoRA matrix gets a gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    tokens, mask, groups = grouped_batch(tok)
    weights = torch.randn(mask.shape)
    plain = token_logprobs(model, tokens, temperature) * mask
    (plain * weights).sum().backward()
    grads_plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    shared = shared_prompt_logprobs(model, tokens, mask, groups, temperature)
    (shared * weights).sum().backward()
    assert torch.allclose(shared, plain, atol=1e-5)
    assert (shared[~mask] == 0).all()
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = float(grads_plain[name].abs().max())
            assert scale > 0 and torch.allclose(p.grad, grads_plain[name], atol=1e-5 * (1 + scale)), name


def test_completion_spans_detects_multi_turn_masks():
    mask = torch.tensor([[False, True, True, False], [False, False, True, True]])
    start, length = completion_spans(mask)
    assert start.tolist() == [1, 2] and length.tolist() == [2, 2]
    assert completion_spans(torch.tensor([[True, False, True, False]])) is None  # a hole: tool output


def test_policy_logprobs_falls_back_for_holes(tiny):
    model, tok = tiny
    tokens = torch.randint(3, tok.vocab_size, (2, 9))
    mask = torch.tensor(
        [[False, True, True, False, True, True, False, False], [False, False, True, True, True, True, True, True]]
    )
    with torch.no_grad():
        got = policy_logprobs(model, tokens, mask, torch.tensor([0, 1]))
        want = token_logprobs(model, tokens)
    assert torch.equal(got, want)


def test_reference_is_the_adapter_disabled_base(tiny):
    model, tok = tiny
    tokens = torch.randint(3, tok.vocab_size, (2, 7))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)  # make the adapter matter
        policy = token_logprobs(model, tokens)
        with reference(model):
            ref = token_logprobs(model, tokens)
    assert not torch.allclose(policy, ref)
    with torch.no_grad(), model.disable_adapter():
        assert torch.equal(token_logprobs(model, tokens), ref)


def test_entropy_from_the_chunks_matches_a_direct_computation_on_both_paths(tiny):
    from reasonrl.model import policy_logprobs_entropy

    model, tok = tiny
    tokens, mask, groups = grouped_batch(tok)
    with torch.no_grad():
        logits = model(input_ids=tokens[:, :-1]).logits / 0.7  # (B, T, V)
        want = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)  # (B, T)
        shared_logp, shared = policy_logprobs_entropy(model, tokens, mask, groups, 0.7)
        plain_logp, plain = policy_logprobs_entropy(model, tokens, mask, None, 0.7)
    assert torch.allclose(plain, want, atol=1e-5)
    assert torch.allclose(shared[mask], want[mask], atol=1e-5) and (shared[~mask] == 0).all()
    assert torch.allclose(shared_logp, plain_logp * mask, atol=1e-5)
    assert policy_logprobs_entropy(model, tokens, mask, groups, 0.7, with_entropy=False)[1] is None


def test_gradient_checkpointing_gives_the_same_lora_gradients():
    """model.gradient_checkpointing recomputes every layer in the backward pass (the policy stays in eval mode,
    where transformers would skip checkpointing) and the adapter's gradients do not change."""
    import torch

    from reasonrl.config import LoraConfig, ModelConfig
    from reasonrl.model import load_policy, policy_logprobs, token_logprobs

    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model, _ = load_policy(
            ModelConfig(path="tiny:llama", dtype="float32", gradient_checkpointing=checkpointing), LoraConfig(rank=4)
        )
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)  # B = 0 at init would make A's gradient 0 either way
        calls = []
        attention = model.base_model.model.model.layers[0].self_attn
        attention.register_forward_pre_hook(lambda *_, calls=calls: calls.append(1))
        tokens = torch.arange(1, 25).reshape(2, 12) % 50
        token_logprobs(model, tokens).sum().backward()
        assert len(calls) == (2 if checkpointing else 1)  # forward, and the recompute in backward
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[:, 5:] = True
    shared = torch.cat([tokens[:1], tokens[:1]])
    shared[1, 6:] = 3  # one prompt, two completions: the layout that takes the shared-prompt pass
    assert torch.allclose(
        policy_logprobs(model, shared, mask, torch.tensor([0, 0]))[mask], token_logprobs(model, shared)[mask], atol=1e-5
    )
    assert all(g.abs().sum() > 0 for g in grads[1].values())
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_function_equals_log_softmax_gather(dtype, temperature):
    """The fused log-prob function gives log_softmax(z / T)[target] and autograd's gradient of it, across a
    chunk boundary (150 positions, chunks of 64), in float32 and with bf16 logits."""
    from reasonrl.model import TokenLogprobs

    torch.manual_seed(0)
    logits = (torch.randn(3, 150, 40) * 3).to(dtype).requires_grad_(True)
    targets = torch.randint(0, 40, (3, 150))
    weights = torch.randn(3, 150)
    want = (logits.float() / temperature).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    (want * weights).sum().backward()
    want_grad, logits.grad = logits.grad.clone(), None
    got = TokenLogprobs.apply(logits, targets, temperature)
    (got * weights).sum().backward()
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-5)
    assert logits.grad.dtype == dtype
    assert torch.allclose(logits.grad.float(), want_grad.float(), atol=1e-5 if dtype == torch.float32 else 1e-2)


def test_token_logprobs_function_passes_gradcheck_in_float64():
    from reasonrl.model import TokenLogprobs

    logits = torch.randn(2, 70, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 6, (2, 70))
    assert torch.autograd.gradcheck(lambda z: TokenLogprobs.apply(z, targets, 0.7), (logits,))


def test_the_run_seed_sets_the_lora_initialisation_and_leaves_the_global_generator_alone():
    from reasonrl.config import LoraConfig, ModelConfig

    def adapter(seed, lora=True):
        model_cfg = ModelConfig(path="tiny:llama", dtype="float32")
        policy, _ = load_policy(model_cfg, LoraConfig(enabled=lora, rank=4), seed=seed)
        return [p.detach().flatten() for n, p in policy.named_parameters() if "lora_A" in n]

    adapter(None, lora=False)  # loading the tiny model seeds the global generator; no adapter draws from it
    expected = torch.rand(3)
    first = torch.cat(adapter(1))
    assert torch.equal(torch.rand(3), expected)  # the seeded initialisation left the global generator alone
    assert torch.equal(torch.cat(adapter(1)), first) and not torch.equal(torch.cat(adapter(2)), first)
