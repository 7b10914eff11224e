"""A NaN/inf loss never reaches the weights: its optimizer step is skipped and counted (optim/skipped), and a
run whose loss stays non-finite stops with Diverged after optim.max_nonfinite_steps steps."""

import json

import pytest
import torch

from reasonrl import update as update_module
from reasonrl.roles import Learner
from reasonrl.run import read_state
from reasonrl.train import train
from reasonrl.update import Diverged
from tests.batches import make_batch
from tests.helpers import tiny_config

real_loss = update_module.micro_batch_loss


def poison(monkeypatch, bad_calls):
    """Make the loss NaN on the micro-batch calls whose index is in bad_calls (a set, or 'all')."""
    calls = []

    def loss(*args, **kwargs):
        value, metrics = real_loss(*args, **kwargs)
        calls.append(len(calls))
        if bad_calls == "all" or calls[-1] in bad_calls:
            value = value * float("nan")
        return value, metrics

    monkeypatch.setattr(update_module, "micro_batch_loss", loss)
    return calls


def metrics(run_dir):
    return {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_a_nan_step_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    # 16 rows, micro_batch_size 8: two micro-batches a step; call 2 is step 2's first.
    poison(monkeypatch, {2})
    run_dir = train(tiny_config(tmp_path, "steps=3"), quiet=True)
    rows = metrics(run_dir)
    assert [rows[s]["optim/skipped"] for s in (1, 2, 3)] == [0, 1, 0]
    assert read_state(run_dir)["state"] == "finished"
    assert all(v == v for v in rows[3].values() if isinstance(v, float)), "NaN after the skipped step"


def test_the_weights_do_not_move_on_a_skipped_step(tmp_path, monkeypatch):
    poison(monkeypatch, "all")
    cfg = tiny_config(tmp_path, "steps=1", "optim.max_nonfinite_steps=0")
    learner = Learner(cfg)
    before = {k: v.clone() for k, v in learner.policy.named_parameters() if v.requires_grad}
    out = learner.step(make_batch([1.0, 0.0, 1.0, 0.0], group_size=2))
    assert out["optim/skipped"] == 1 and "optim/steps" not in out
    for k, v in learner.policy.named_parameters():
        if v.requires_grad:
            assert torch.equal(v, before[k]), k
    assert not learner.optimizer.state, "a skipped step must not touch Adam's moments"


def test_a_loss_that_stays_nan_stops_the_run_with_one_message(tmp_path, monkeypatch):
    poison(monkeypatch, "all")
    with pytest.raises(Diverged, match=r"NaN/inf on 2 steps in a row \(optim.max_nonfinite_steps=2\).*optim.lr=0.01"):
        train(tiny_config(tmp_path, "steps=5", "optim.max_nonfinite_steps=2"), quiet=True)
    state = read_state(tmp_path / "runs" / "tiny")
    assert state["state"] == "failed" and state["error"].startswith("Diverged"), state
    assert state["step"] == 1  # step 1 was logged; step 2 raised


@pytest.mark.parametrize("normalizer, expected", [("mini_batch", (1.0, 1.0)), ("batch_average", (10 / 6, 2 / 6))])
def test_token_mean_divides_by_the_mini_batch_or_the_batch_average(tmp_path, monkeypatch, normalizer, expected):
    # Rows of 5, 5, 1, 1 sampled tokens in two mini-batches of 10 and 2 tokens: TRL's normaliser (batch_average)
    # divides both steps by 12 / 2 = 6, verl's (mini_batch) by their own 10 and 2. Adam's first step does not
    # depend on the gradient's scale, so each step's gradient norm scales by exactly tokens / divisor.
    norms = {}
    for mode in ("mini_batch", normalizer):
        seen = []
        real = torch.nn.utils.clip_grad_norm_

        def record(params, max_norm, _seen=seen, _real=real):
            _seen.append(float(_real(params, max_norm)))
            return torch.tensor(_seen[-1])

        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
        cfg = tiny_config(
            tmp_path, "steps=1", "algo.mini_batches=2", "optim.grad_clip=1e9", f"algo.token_normalizer={mode}"
        )
        torch.manual_seed(0)
        batch = make_batch([1.0, 0.0, 1.0, 0.0], group_size=2, lengths=[5, 5, 1, 1])
        batch.tokens = torch.randint(3, 100, batch.tokens.shape)  # distinct rows, or opposite advantages cancel
        Learner(cfg).step(batch)
        monkeypatch.undo()
        norms[mode] = seen
    ratios = [b / a for a, b in zip(norms["mini_batch"], norms[normalizer])]
    assert ratios == pytest.approx(list(expected), rel=1e-3)
