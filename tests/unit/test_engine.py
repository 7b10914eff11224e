"""HF engine: reproducible sampling, greedy determinism, limits, and sampler log-probs equal to the trainer's."""

import torch

from reasonrl.weights import weights_of
from reasonrl.config import EngineConfig, HFConfig
from reasonrl.engine import SamplingParams
from reasonrl.engine.decoding import TransposedLinear, sample_next
from reasonrl.engine.hf import HFEngine
from reasonrl.model import token_logprobs


def prompts(tok):
    return [tok.apply_chat_template([{"role": "user", "content": q}]) for q in ("1+1=", "what is 12*3?", "x")]


def test_seeded_sampling_is_reproducible_and_seed_matters(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok, EngineConfig())
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    a = engine.generate(prompts(tok), params, n=3, seed=7)
    b = engine.generate(prompts(tok), params, n=3, seed=7)
    c = engine.generate(prompts(tok), params, n=3, seed=8)

    def ids(out):
        return [c.token_ids for g in out for c in g]

    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert len(a) == 3 and all(len(g) == 3 for g in a)


def test_greedy_is_deterministic_and_identical_across_group(tiny):
    model, tok = tiny
    engine = HFEngine(model, tok, EngineConfig())
    out = engine.generate(prompts(tok), SamplingParams(max_new_tokens=10, temperature=0.0), n=2, seed=1)
    again = engine.generate(prompts(tok), SamplingParams(max_new_tokens=10, temperature=0.0), n=2, seed=99)
    for g, h in zip(out, again):
        assert g[0].token_ids == g[1].token_ids == h[0].token_ids


def test_max_tokens_and_stop_tokens(tiny):
    model, tok = tiny
    with torch.no_grad():  # a large EOS row: EOS becomes likely in some states, so both endings occur
        model.base_model.model.lm_head.weight[tok.eos_token_id] *= 30.0
    engine = HFEngine(model, tok, EngineConfig(batch_size=4))  # several chunks
    out = engine.generate(prompts(tok), SamplingParams(max_new_tokens=5, temperature=1.0), n=3, seed=0)
    ends = {c.finished for group in out for c in group}
    assert ends == {True, False}
    for group in out:
        for c in group:
            assert 1 <= len(c.token_ids) <= 5 and len(c.logprobs) == len(c.token_ids)
            if c.finished:
                assert c.token_ids[-1] in engine.stop_ids and tok.eos_token_id not in c.token_ids[:-1]
            else:
                assert len(c.token_ids) == 5


def test_sampler_logprobs_match_trainer_logprobs(tiny):
    """Left-padded, cache-shared, row-pruned sampling gives the same log-probs as one full forward pass."""
    model, tok = tiny
    engine = HFEngine(model, tok, EngineConfig())
    ps = prompts(tok)
    for temperature in (1.0, 0.7):
        out = engine.generate(ps, SamplingParams(max_new_tokens=16, temperature=temperature), n=4, seed=3)
        for prompt, group in zip(ps, out):
            for c in group:
                tokens = torch.tensor([prompt + c.token_ids])
                with torch.no_grad():
                    logp = token_logprobs(model, tokens, temperature)[0, len(prompt) - 1 :]
                assert torch.allclose(logp, torch.tensor(c.logprobs), atol=1e-4), (logp, c.logprobs)


def test_top_p_samples_only_from_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(200, 1)
    gen = torch.Generator().manual_seed(0)
    tokens, logp = sample_next(logits, SamplingParams(1, 1.0, top_p=0.7), gen)
    assert set(tokens.tolist()) <= {0, 1}
    assert torch.allclose(logp, torch.log(torch.tensor([0.5, 0.3]))[tokens])


def test_min_new_tokens_gives_fixed_lengths(tiny):
    model, tok = tiny
    with torch.no_grad():
        model.base_model.model.lm_head.weight[tok.eos_token_id] *= 30.0  # EOS likely
    engine = HFEngine(model, tok, EngineConfig())
    out = engine.generate(
        prompts(tok), SamplingParams(max_new_tokens=6, temperature=1.0, min_new_tokens=6), n=4, seed=0
    )
    assert all(len(c.token_ids) == 6 and tok.eos_token_id not in c.token_ids for g in out for c in g)


def test_merged_copy_follows_the_adapter_after_sync_and_leaves_the_policy_alone(tiny):
    """The engine decodes from W + scale*B*A; after the adapter changes, update_weights must make the sampler's
    log-probs equal the LoRA policy's again (a stale copy would silently sample the old policy)."""
    model, tok = tiny
    engine = HFEngine(model, tok, EngineConfig(hf=HFConfig(merge_lora=True)))
    assert engine.model is not model
    base_before = {n: p.clone() for n, p in model.named_parameters() if "lora_" not in n}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    params = SamplingParams(max_new_tokens=10, temperature=1.0)

    def max_diff():
        out = engine.generate(prompts(tok)[:1], params, n=3, seed=5)[0]
        worst = 0.0
        for c in out:
            tokens = torch.tensor([prompts(tok)[0] + c.token_ids])
            with torch.no_grad():
                logp = token_logprobs(model, tokens)[0, len(prompts(tok)[0]) - 1 :]
            worst = max(worst, float((logp - torch.tensor(c.logprobs)).abs().max()))
        return worst

    assert max_diff() > 1e-2  # stale copy
    engine.update_weights(weights_of(model, 1))
    assert max_diff() < 1e-4
    for name, p in model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base_before[name]), name


def test_transposed_linear_loads_tiles_exactly_and_computes_the_linear():
    """load() copies W^T tile by tile; every shape (multiples of the tile or not) must give exactly W^T."""
    for out_f, in_f in [(64, 96), (576, 1536), (40, 70), (32, 7), (1, 1)]:
        linear = torch.nn.Linear(in_f, out_f)
        layer = TransposedLinear(linear)
        weight = torch.randn(out_f, in_f)
        layer.load(weight)
        assert torch.equal(layer.weight_t, weight.t()) and layer.weight_t.is_contiguous()
        x = torch.randn(3, in_f)
        assert torch.allclose(layer(x), x @ weight.t() + linear.bias, rtol=1e-4, atol=1e-4)


def test_sampling_frequencies_match_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = torch.log(probs.clamp(min=1e-30)).repeat(20000, 1)
    tokens, logp = sample_next(logits, SamplingParams(1, 1.0), torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=5).float() / 20000
    assert torch.allclose(freq, probs, atol=0.01) and freq[4] == 0
    assert torch.allclose(logp, probs.log()[tokens])
    tokens, _ = sample_next(
        torch.log(probs[:4]).repeat(20000, 1) / 2, SamplingParams(1, 0.5), torch.Generator().manual_seed(1)
    )  # temperature 0.5 on logits/2 gives probs back
    assert torch.allclose(torch.bincount(tokens, minlength=4).float() / 20000, probs[:4], atol=0.01)


def test_reserved_cache_decodes_exactly_like_the_growing_cache(tiny, monkeypatch):
    """The preallocated KV cache is an optimisation only: same tokens and log-probs as transformers'
    DynamicCache, including rows leaving the batch and a capacity too small (the buffer grows)."""
    import reasonrl.engine.hf as hf
    from transformers import DynamicCache

    model, tok = tiny
    params = SamplingParams(max_new_tokens=12, temperature=1.0)
    reserved = HFEngine(model, tok, EngineConfig()).generate(prompts(tok), params, n=3, seed=7)
    small = hf.reserved_cache
    monkeypatch.setattr(hf, "reserved_cache", lambda capacity: small(4))  # forces growth mid-decode
    grown = HFEngine(model, tok, EngineConfig()).generate(prompts(tok), params, n=3, seed=7)
    monkeypatch.setattr(hf, "reserved_cache", lambda capacity: DynamicCache())
    plain = HFEngine(model, tok, EngineConfig()).generate(prompts(tok), params, n=3, seed=7)
    for a, b, c in zip([x for g in reserved for x in g], [x for g in grown for x in g], [x for g in plain for x in g]):
        assert a.token_ids == b.token_ids == c.token_ids and a.finished == c.finished
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(c.logprobs), atol=1e-5)
        assert torch.allclose(torch.tensor(b.logprobs), torch.tensor(c.logprobs), atol=1e-5)
    assert any(not x.finished for g in plain for x in g) and any(x.finished for g in plain for x in g)
