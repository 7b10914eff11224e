"""Advantage, loss, KL and aggregation math against hand-computed values and slow reference loops
(ALGORITHMS.md sections 0, 2 and 11)."""

import math

import pytest
import torch

from reasonrl.algos import ADVANTAGES, POLICY_LOSSES, aggregate, kl_estimate
from reasonrl.algos.advantages import group_normalise
from reasonrl.config import AlgoConfig, PPOClipLoss
from tests.batches import make_batch


def test_grpo_bessel_std_hand_values():
    # r = (1,0,1,0): mean 0.5, Bessel std sqrt(1/3) = 0.5774 -> +-0.866 (population std would give +-1).
    adv = group_normalise(torch.tensor([1.0, 0.0, 1.0, 0.0]), 4, scale_by_std=True, eps=0.0)
    assert torch.allclose(adv, torch.tensor([0.8660, -0.8660, 0.8660, -0.8660]), atol=1e-4)


def test_grpo_matches_slow_loop_and_broadcasts_over_mask():
    torch.manual_seed(0)
    rewards = torch.rand(12).round(decimals=1).tolist()
    batch = make_batch(rewards, group_size=4, lengths=[1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 2, 2])
    adv = ADVANTAGES.get("grpo")(batch, AlgoConfig())
    for i in range(12):
        group = rewards[(i // 4) * 4 : (i // 4) * 4 + 4]
        mean = sum(group) / 4
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / 3)
        expected = (rewards[i] - mean) / (std + 1e-6)
        for t in range(5):
            want = expected if batch.mask[i, t] else 0.0
            assert adv[i, t].item() == pytest.approx(want, abs=1e-5)


def test_equal_rewards_give_zero_advantage_without_nan():
    batch = make_batch([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], group_size=3)
    adv = ADVANTAGES.get("grpo")(batch, AlgoConfig())
    assert torch.isfinite(adv).all() and (adv == 0).all()


def test_advantages_sum_to_zero_in_each_group():
    batch = make_batch([0.3, 1.0, 0.0, 0.7, 0.2, 0.9], group_size=3)
    for scale in (True, False):
        adv = ADVANTAGES.get("grpo")(batch, AlgoConfig(scale_by_std=scale))[:, -1]
        assert adv.view(2, 3).sum(1).abs().max() < 1e-5


def test_single_sample_group_keeps_raw_reward():
    batch = make_batch([0.25, 1.0], group_size=1)
    assert ADVANTAGES.get("grpo")(batch, AlgoConfig())[:, -1].tolist() == [0.25, 1.0]


def test_dr_grpo_advantage_has_no_std():
    adv = group_normalise(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, scale_by_std=False, eps=1e-6)
    assert torch.allclose(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]))


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_advantage_is_zero_on_masked_tokens(name):
    batch = make_batch([1.0, 0.0, 0.5, 0.2], group_size=2, lengths=[2, 3, 1, 4])
    adv = ADVANTAGES.get(name)(batch, AlgoConfig())
    assert adv.shape == batch.mask.shape and (adv[~batch.mask] == 0).all()


def ppo(logp, old, adv, mask=None, low=0.2, high=0.2):
    mask = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask
    return POLICY_LOSSES.get("ppo_clip")(logp, old, adv, mask, PPOClipLoss(clip_low=low, clip_high=high))


def test_ppo_clip_zero_gradient_outside_trust_region():
    # A > 0 and rho = 1.5 > 1 + eps: clipped, no gradient.
    logp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, metrics = ppo(logp, torch.zeros(1, 1), torch.ones(1, 1))
    loss.sum().backward()
    assert logp.grad.item() == 0.0 and metrics["clip_frac"] == 1.0
    assert loss.item() == pytest.approx(-1.2)
    # A < 0 and rho = 0.5 < 1 - eps: clipped, no gradient.
    logp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    loss, _ = ppo(logp, torch.zeros(1, 1), -torch.ones(1, 1))
    loss.sum().backward()
    assert logp.grad.item() == 0.0 and loss.item() == pytest.approx(0.8)


def test_ppo_clip_on_policy_is_plain_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[0.5, -2.0]])
    loss, _ = ppo(logp, logp.detach(), adv)
    loss.sum().backward()
    assert torch.allclose(logp.grad, -adv)


def test_clip_higher_is_asymmetric():
    logp = torch.tensor([[math.log(1.25)]], requires_grad=True)
    loss, _ = ppo(logp, torch.zeros(1, 1), torch.ones(1, 1), low=0.2, high=0.28)
    loss.sum().backward()
    assert logp.grad.item() != 0.0  # 1.25 < 1.28: still inside the raised upper bound


def test_ppo_matches_slow_loop():
    torch.manual_seed(1)
    logp, old, adv = torch.randn(3, 4) * 0.3, torch.randn(3, 4) * 0.3, torch.randn(3, 4)
    loss, _ = ppo(logp, old, adv)
    for i in range(3):
        for t in range(4):
            rho = math.exp(logp[i, t] - old[i, t])
            a = adv[i, t].item()
            want = max(-rho * a, -min(max(rho, 0.8), 1.2) * a)
            assert loss[i, t].item() == pytest.approx(want, rel=1e-5)


def test_masked_tokens_get_exactly_zero_gradient():
    logp = torch.randn(2, 5, requires_grad=True)
    mask = torch.tensor([[False, True, True, False, False], [True, True, True, True, False]])
    loss, _ = ppo(logp, logp.detach(), torch.randn(2, 5), mask)
    kl = kl_estimate(logp, torch.randn(2, 5), "k3")
    total = aggregate(loss + 0.1 * kl, mask, "token-mean", batch_tokens=6, batch_seqs=2, max_len=5)
    total.backward()
    assert (logp.grad[~mask] == 0).all() and (logp.grad[mask] != 0).all()


def test_aggregation_weights_by_length():
    # Lengths 100 and 400, every token loss 1: seq-mean-token-mean weights tokens 1/(2*100) and 1/(2*400),
    # token-mean weights every token 1/500 (ALGORITHMS.md section 11, item 3).
    mask = torch.zeros(2, 400, dtype=torch.bool)
    mask[0, :100] = True
    mask[1, :] = True
    x = torch.ones(2, 400, requires_grad=True)
    aggregate(x, mask, "seq-mean-token-mean", batch_tokens=500, batch_seqs=2, max_len=400).backward()
    assert x.grad[0, 0].item() == pytest.approx(0.005) and x.grad[1, 0].item() == pytest.approx(0.00125)
    x.grad = None
    aggregate(x, mask, "token-mean", batch_tokens=500, batch_seqs=2, max_len=400).backward()
    assert x.grad[0, 0].item() == pytest.approx(x.grad[1, 0].item()) == pytest.approx(1 / 500)
    x.grad = None
    aggregate(x, mask, "seq-mean-token-sum-norm", batch_tokens=500, batch_seqs=2, max_len=400).backward()
    assert x.grad[0, 0].item() == pytest.approx(1 / 800)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_micro_batches_sum_to_full_batch(mode):
    torch.manual_seed(2)
    per_token = torch.randn(6, 7)
    mask = torch.rand(6, 7) > 0.3
    norms = dict(batch_tokens=int(mask.sum()), batch_seqs=6, max_len=7)
    full = aggregate(per_token, mask, mode, **norms)
    parts = sum(aggregate(per_token[i : i + 2], mask[i : i + 2], mode, **norms) for i in range(0, 6, 2))
    assert parts.item() == pytest.approx(full.item(), rel=1e-6)


def test_kl_estimators_values():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.5])
    for name in ("k1", "k2", "k3"):
        assert kl_estimate(logp[:1], ref[:1], name).item() == 0.0  # equality gives 0
    d = 0.5  # ref - logp for the second token
    assert kl_estimate(logp, ref, "k1")[1].item() == pytest.approx(-d)
    assert kl_estimate(logp, ref, "k2")[1].item() == pytest.approx(d * d / 2)
    assert kl_estimate(logp, ref, "k3")[1].item() == pytest.approx(math.exp(d) - 1 - d)
    assert (kl_estimate(torch.randn(100), torch.randn(100), "k3") >= 0).all()


def test_kl_gradient_identities_on_a_categorical():
    """As a loss term: E_pi[grad k2] = grad KL(pi||ref); E_pi[grad k3] = grad KL(ref||pi); E_pi[grad k1] = 0."""
    torch.manual_seed(3)
    theta = torch.randn(5, requires_grad=True)
    ref = torch.randn(5).log_softmax(0)

    def expected_grad(name):
        logp = theta.log_softmax(0)
        probs = logp.exp().detach()  # sampling is not differentiated
        val = (probs * kl_estimate(logp, ref, name)).sum()
        return torch.autograd.grad(val, theta)[0]

    logp = theta.log_softmax(0)
    fwd = torch.autograd.grad((logp.exp() * (logp - ref)).sum(), theta)[0]  # grad KL(pi||ref)
    logp = theta.log_softmax(0)
    rev = torch.autograd.grad((ref.exp() * (ref - logp)).sum(), theta)[0]  # grad KL(ref||pi)
    assert torch.allclose(expected_grad("k1"), torch.zeros(5), atol=1e-6)
    assert torch.allclose(expected_grad("k2"), fwd, atol=1e-6)
    assert torch.allclose(expected_grad("k3"), rev, atol=1e-6)
