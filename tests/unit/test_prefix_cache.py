"""Prefix reuse between turns is an optimisation only: the same tokens and log-probs as prefilling the whole
conversation again, with rows of different lengths, rows that stopped early, several chunks and n > 1; and a
multi-turn rollout gives the same trajectories with and without it."""

import torch

from reasonrl.weights import weights_of
from reasonrl.config import EngineConfig, HFConfig
from reasonrl.engine import SamplingParams
from reasonrl.engine.hf import HFEngine
from reasonrl.engine.prefix import PrefixStore, reuse_layout


def prompts(tok):
    return [tok.apply_chat_template([{"role": "user", "content": q}]) for q in ("1+1=", "what is 12*3?", "x")]


def test_store_takes_the_longest_stored_prefix_and_empties_itself():
    store = PrefixStore()
    store.put([1, 2], ["a"])  # type: ignore[list-item]
    store.put([1, 2, 3], ["b"])  # type: ignore[list-item]
    store.put([1, 2, 3, 4], ["c"])  # type: ignore[list-item]
    store.put([9], ["d"])  # type: ignore[list-item]
    hits = store.take([[1, 2, 3, 5], [1, 2, 3, 4], [7, 7], [1, 2]])
    # the whole prompt is never taken: at least one token must be fed to get the next-token logits
    assert hits == [(3, ["b"]), (3, ["b"]), (0, None), (0, None)] and len(store) == 0


def test_layout_feeds_the_longest_new_part_and_keeps_rows_contiguous():
    ps = [[0] * 10, [0] * 6, [0] * 3]
    reuse, window = reuse_layout(ps, [8, 0, 2])  # new parts 2, 6, 1
    assert window == 6 and reuse == [4, 0, 0]  # row 0 re-feeds 4 of its 8 cached tokens; row 2 needs none


def conversation_turns(engine, tok, params, turns=3):
    """Three turns: each prompt = previous prompt + its sampled reply + a fixed observation of varying length."""
    ps, outs = prompts(tok), []
    for turn in range(turns):
        out = engine.generate(ps, params, n=1, seed=11 + turn, keep=turn + 1 < turns)
        outs.append(out)
        ps = [p + g[0].token_ids + tok.encode(" obs" * (1 + (i + turn) % 3)) for i, (p, g) in enumerate(zip(ps, out))]
    return outs


def test_cached_turns_equal_full_prefills(tiny):
    model, tok = tiny
    with torch.no_grad():  # make EOS likely so that some rows stop early and leave the batch
        model.base_model.model.lm_head.weight[tok.eos_token_id] *= 8.0
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    fed = {True: 0, False: 0}  # tokens fed to the model (prefill and decode) by each engine
    forward = model.forward

    def counting(enabled):
        def call(*args, **kwargs):
            fed[enabled] += kwargs["input_ids"].numel()
            return forward(*args, **kwargs)

        return call

    cached = HFEngine(model, tok, EngineConfig(batch_size=2, hf=HFConfig(merge_lora=False)))  # two chunks per call
    cached.model.forward = counting(True)
    a = conversation_turns(cached, tok, params)
    plain = HFEngine(model, tok, EngineConfig(batch_size=2, hf=HFConfig(prefix_cache=False, merge_lora=False)))
    plain.model.forward = counting(False)
    b = conversation_turns(plain, tok, params)
    model.forward = forward
    finished = set()
    for turn_a, turn_b in zip(a, b):
        for ga, gb in zip(turn_a, turn_b):
            assert ga[0].token_ids == gb[0].token_ids and ga[0].finished == gb[0].finished
            assert torch.allclose(torch.tensor(ga[0].logprobs), torch.tensor(gb[0].logprobs), atol=1e-5)
            finished.add(ga[0].finished)
    assert finished == {True, False}
    assert fed[True] < 0.7 * fed[False]  # later turns did not feed the whole conversation again
    assert len(cached.prefixes) == 0  # the last turn kept nothing


def test_group_prefill_then_continuations_and_sync_clears(tiny):
    """n > 1 on the first call (one shared prefill), one continuation per row afterwards."""
    model, tok = tiny
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    results = []
    for enabled in (True, False):
        engine = HFEngine(model, tok, EngineConfig(hf=HFConfig(prefix_cache=enabled)))
        first = engine.generate(prompts(tok)[:2], SamplingParams(6, 1.0), n=3, seed=5, keep=True)
        rows = [p + c.token_ids + tok.encode(" next") for p, g in zip(prompts(tok)[:2], first) for c in g]
        results.append(engine.generate(rows, params, n=1, seed=6))
    for ga, gb in zip(*results):
        assert ga[0].token_ids == gb[0].token_ids
        assert torch.allclose(torch.tensor(ga[0].logprobs), torch.tensor(gb[0].logprobs), atol=1e-5)
    engine = HFEngine(model, tok, EngineConfig())
    engine.generate(prompts(tok), params, n=2, seed=0, keep=True)
    assert len(engine.prefixes) == 3  # greedy: both samples of a prompt are the same tokens, one entry
    engine.update_weights(weights_of(model, 1))  # new weights: stored KV is stale
    assert len(engine.prefixes) == 0


def test_multiturn_rollout_is_the_same_with_and_without_prefix_reuse(tiny):
    from reasonrl.config import TaskConfig
    from reasonrl.envs import EnvContext, Environment
    from reasonrl.rollout import rollout
    from reasonrl.tasks import load_task

    model, tok = tiny
    examples = load_task(TaskConfig(name="corridor")).train[:3]
    runs = []
    for enabled in (True, False):
        engine = HFEngine(model, tok, EngineConfig(hf=HFConfig(prefix_cache=enabled)))
        runs.append(
            rollout(
                Environment("corridor", EnvContext(), max_turns=4),
                engine,
                tok,
                examples,
                n=2,
                params=SamplingParams(max_new_tokens=3, temperature=1.0),
                seed=4,
            )
        )
    assert max(t.num_turns for t in runs[0]) > 1
    for a, b in zip(*runs):
        assert (a.tokens, a.mask, a.step_token_ends, a.reward) == (b.tokens, b.mask, b.step_token_ends, b.reward)
        assert torch.allclose(torch.tensor(a.sampler_logp), torch.tensor(b.sampler_logp), atol=1e-5)
