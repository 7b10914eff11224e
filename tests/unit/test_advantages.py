"""Advantage estimators against ALGORITHMS.md's worked examples, hand-computed values and slow per-sample loops;
equal rewards, single-sample groups and masks as documented in reasonrl/algos/advantages.py."""

import math

import pytest
import torch

from reasonrl.algos import ADVANTAGES
from reasonrl.algos.advantages import discounted_returns, gae_advantages, masked_whiten
from reasonrl.config import AlgoConfig
from tests.batches import make_batch, make_multiturn_batch

# How each estimator treats equal rewards: a new registry entry must be classified here (see the last test).
GROUP_ZERO = {"grpo", "dr_grpo", "rloo", "grpo_process", "gigpo"}  # equal rewards in a group -> exactly 0
BATCH_ZERO = {"reinforce_pp", "reinforce_pp_baseline"}  # equal rewards in the whole batch -> exactly 0
CRITIC = {"gae"}  # zero only where r_t + gamma V_{t+1} = V_t


def test_grpo_process_reproduces_the_deepseekmath_worked_example():
    # ALGORITHMS.md section 2: G=2, step rewards (0.2, 0.8, 1.0) and (0.1, 0.1, 0.0), population std 0.386;
    # normalised (-0.43, 1.12, 1.64), (-0.69, -0.69, -0.95); token advantages per step (2.33, 2.76, 1.64) and
    # (-2.33, -1.64, -0.95). Steps end at positions 1, 3, 5 of 6 completion tokens.
    steps = [[(1, 0.2), (3, 0.8), (5, 1.0)], [(1, 0.1), (3, 0.1), (5, 0.0)]]
    batch = make_batch([1.0, 0.0], group_size=2, width=6, steps=steps)
    adv = ADVANTAGES.get("grpo_process")(batch, AlgoConfig(unbiased_std=False, std_eps=0.0))
    want = [[2.33, 2.33, 2.76, 2.76, 1.64, 1.64], [-2.33, -2.33, -1.64, -1.64, -0.95, -0.95]]
    assert torch.allclose(adv, torch.tensor(want), atol=0.01)
    # Bessel's std (the default) scales every normalised reward by sqrt((n-1)/n) with n = 6 step rewards.
    bessel = ADVANTAGES.get("grpo_process")(batch, AlgoConfig(std_eps=0.0))
    assert torch.allclose(bessel, adv * math.sqrt(5 / 6), atol=1e-5)


def test_grpo_process_matches_a_slow_loop():
    torch.manual_seed(0)
    g, width = 3, 8
    steps = []
    for _ in range(2 * g):
        ends = sorted(torch.randperm(width)[:3].tolist())
        steps.append([(e, round(float(torch.rand(())), 2)) for e in ends])
    batch = make_batch([0.0] * (2 * g), group_size=g, width=width, steps=steps)
    adv = ADVANTAGES.get("grpo_process")(batch, AlgoConfig())
    for i in range(2 * g):
        group = [r for row in steps[(i // g) * g : (i // g) * g + g] for _, r in row]
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (len(group) - 1))
        for t in range(width):
            want = sum((r - mean) / (std + 1e-6) for end, r in steps[i] if end >= t)
            assert adv[i, t].item() == pytest.approx(want, abs=1e-4)


def test_grpo_process_with_one_step_is_outcome_supervision():
    batch = make_batch([0.3, 1.0, 0.0, 0.7, 0.2, 0.9], group_size=3, lengths=[2, 5, 3, 1, 4, 5])
    for cfg in (AlgoConfig(), AlgoConfig(scale_by_std=False), AlgoConfig(unbiased_std=False)):
        process = ADVANTAGES.get("grpo_process")(batch, cfg)
        assert torch.allclose(process, ADVANTAGES.get("grpo")(batch, cfg), atol=1e-5)


def test_rloo_is_leave_one_out_and_k_over_k_minus_1_times_centred():
    rewards = [1.0, 0.0, 0.5, 0.25, 0.9, 0.1, 0.3, 0.3]
    adv = ADVANTAGES.get("rloo")(make_batch(rewards, group_size=4), AlgoConfig())[:, -1]
    for i, r in enumerate(rewards):
        group = rewards[(i // 4) * 4 : (i // 4) * 4 + 4]
        others = [x for j, x in enumerate(group) if j != i % 4]
        assert adv[i].item() == pytest.approx(r - sum(others) / 3, abs=1e-6)
        assert adv[i].item() == pytest.approx(4 / 3 * (r - sum(group) / 4), abs=1e-6)


def test_dr_grpo_has_no_std_and_ignores_length():
    batch = make_batch([1.0, 0.0, 0.0, 0.0], group_size=4, lengths=[5, 1, 2, 3])
    adv = ADVANTAGES.get("dr_grpo")(batch, AlgoConfig())
    assert torch.allclose(adv[batch.mask], torch.tensor([0.75] * 5 + [-0.25] * 6))


def test_masked_whiten_has_mean_zero_and_unit_bessel_variance_on_the_mask():
    torch.manual_seed(1)
    x, mask = torch.randn(4, 6) * 3 + 2, torch.rand(4, 6) > 0.4
    w = masked_whiten(x, mask)
    assert w[mask].mean().abs() < 1e-5 and w[mask].var(unbiased=True).item() == pytest.approx(1.0, abs=1e-4)
    assert (w[~mask] == 0).all()


def test_reinforce_pp_whitens_discounted_token_returns_over_the_batch():
    batch = make_batch([1.0, 0.0, 0.5], group_size=1, lengths=[3, 2, 4])
    batch.token_rewards = batch.token_rewards - 0.1 * batch.mask  # a per-token KL penalty of 0.1
    cfg = AlgoConfig(gamma=0.9)
    returns = torch.zeros(batch.mask.shape)
    for i in range(3):  # slow loop: G_t = sum_{s >= t} gamma^(s-t) r_s over trained tokens
        positions = batch.mask[i].nonzero().squeeze(-1).tolist()
        for k, t in enumerate(positions):
            returns[i, t] = sum(
                0.9 ** (j - k) * batch.token_rewards[i, s].item() for j, s in enumerate(positions) if j >= k
            )
    assert torch.allclose(discounted_returns(batch.token_rewards, batch.mask, 0.9), returns, atol=1e-6)
    values = returns[batch.mask]
    want = torch.zeros(batch.mask.shape)
    want[batch.mask] = (values - values.mean()) / (values.var(unbiased=True) + 1e-8).sqrt()
    assert torch.allclose(ADVANTAGES.get("reinforce_pp")(batch, cfg), want, atol=1e-5)


def test_reinforce_pp_baseline_subtracts_the_group_mean_then_whitens_globally():
    rewards = [1.0, 0.0, 0.0, 0.5, 0.5, 1.0]
    batch = make_batch(rewards, group_size=3, lengths=[2, 3, 1, 4, 2, 5])
    centred = torch.zeros(batch.mask.shape)
    for i, r in enumerate(rewards):
        group = rewards[(i // 3) * 3 : (i // 3) * 3 + 3]
        centred[i] = (r - sum(group) / 3) * batch.mask[i]
    want = masked_whiten(centred, batch.mask)
    assert torch.allclose(ADVANTAGES.get("reinforce_pp_baseline")(batch, AlgoConfig()), want, atol=1e-6)


def test_gae_hand_values_and_skipped_positions():
    # One row, rewards only at the end (r = 1 at t = 3), V = (0.5, 0.2, 0.4, 0.1) on t = 0..3, mask hole at t = 2
    # (a tool output): it is skipped, so V_next of t = 1 is V_3 and A carries through.
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.9, 0.1]])
    mask = torch.tensor([[True, True, False, True]])
    g, lam = 0.9, 0.8
    d3 = 1.0 - 0.1
    a3 = d3
    d1 = 0.0 + g * 0.1 - 0.2
    a1 = d1 + g * lam * a3
    d0 = 0.0 + g * 0.2 - 0.5
    a0 = d0 + g * lam * a1
    adv, returns = gae_advantages(rewards, values, mask, g, lam)
    assert torch.allclose(adv, torch.tensor([[a0, a1, 0.0, a3]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[a0 + 0.5, a1 + 0.2, 0.0, a3 + 0.1]]), atol=1e-6)


def test_gae_with_gamma_lam_one_and_zero_values_is_the_monte_carlo_return():
    batch = make_batch([1.0, 0.0, 0.5], group_size=1, lengths=[3, 2, 4])
    raw, returns = gae_advantages(batch.token_rewards, batch.values, batch.mask, 1.0, 1.0)
    assert torch.allclose(raw, batch.rewards[:, None] * batch.mask) and torch.allclose(returns, raw)
    assert torch.allclose(ADVANTAGES.get("gae")(batch, AlgoConfig()), masked_whiten(raw, batch.mask))


def test_gae_without_values_says_what_is_missing():
    batch = make_batch([1.0, 0.0], group_size=2)
    batch.values = None
    with pytest.raises(ValueError, match="needs critic values"):
        ADVANTAGES.get("gae")(batch, AlgoConfig())


@pytest.mark.parametrize("name", sorted(GROUP_ZERO))
def test_equal_rewards_in_a_group_give_exactly_zero(name):
    # 0.1 is not exact in binary: r - mean would be a few ulps off zero without the explicit rule.
    batch = make_batch([0.1, 0.1, 0.1, 1.0, 0.0, 0.5], group_size=3, lengths=[2, 5, 3, 4, 1, 5])
    for cfg in (AlgoConfig(), AlgoConfig(std_eps=0.0)):
        adv = ADVANTAGES.get(name)(batch, cfg)
        assert torch.isfinite(adv).all() and (adv[:3] == 0).all() and (adv[3:][batch.mask[3:]] != 0).any()


@pytest.mark.parametrize("name", sorted(BATCH_ZERO | CRITIC))
def test_equal_rewards_in_the_whole_batch_give_zero_without_nan(name):
    batch = make_batch([0.1] * 6, group_size=3, lengths=[2, 5, 3, 4, 1, 5])
    batch.values = batch.token_rewards.clone() if name in CRITIC else batch.values  # V = r: every delta is 0
    adv = ADVANTAGES.get(name)(batch, AlgoConfig(gamma=0.0) if name in CRITIC else AlgoConfig())
    assert torch.isfinite(adv).all() and (adv == 0).all()


def test_single_sample_groups_keep_their_raw_reward():
    batch = make_batch([0.25, 1.0, -0.5], group_size=1, lengths=[2, 3, 1])
    for name in ("grpo", "dr_grpo", "rloo", "grpo_process", "gigpo"):
        assert ADVANTAGES.get(name)(batch, AlgoConfig())[:, -1].tolist() == [0.25, 1.0, -0.5], name
    # reinforce_pp_baseline: the raw rewards (group mean 0), then whitened over the batch
    want = masked_whiten(batch.rewards[:, None] * batch.mask, batch.mask)
    assert torch.allclose(ADVANTAGES.get("reinforce_pp_baseline")(batch, AlgoConfig()), want)


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_advantage_is_finite_and_zero_on_masked_tokens(name):
    batch = make_batch([1.0, 0.0, 0.5, 0.2], group_size=2, lengths=[2, 3, 1, 4], values=torch.rand(4, 5))
    adv = ADVANTAGES.get(name)(batch, AlgoConfig())
    assert adv.shape == batch.mask.shape and torch.isfinite(adv).all() and (adv[~batch.mask] == 0).all()


# Multi-turn episodes (sampled tokens, step reward, state) as rollout() builds them: environment tokens between the
# turns are not trained on; the outcome reward (the sum of the step rewards) sits on the last sampled token.
MULTI_TURN = [
    [(2, 0.0, "a"), (1, 0.0, "b"), (3, 1.0, "c")],
    [(1, 0.0, "a"), (2, 0.5, "b")],
    [(3, 0.0, "a"), (1, 0.0, "d"), (2, 0.0, "b"), (1, 0.0, "e")],
    [(2, 0.2, "a")],
]
OUTCOME = {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"}  # one advantage per episode, on every turn


@pytest.mark.parametrize("name", ADVANTAGES.names())
def test_every_advantage_runs_on_multi_turn_episodes_and_trains_only_sampled_tokens(name):
    batch = make_multiturn_batch(MULTI_TURN, group_size=2, observation=3)
    batch.values = torch.rand(batch.mask.shape)
    assert batch.token_rewards is not None and (batch.token_rewards.sum(1) == batch.rewards).all()
    adv = ADVANTAGES.get(name)(batch, AlgoConfig(gamma=0.9))
    assert adv.shape == batch.mask.shape and torch.isfinite(adv).all()
    assert (adv[~batch.mask] == 0).all() and (adv[batch.mask] != 0).any()
    if name in OUTCOME:  # the same value on every sampled token of an episode, all turns included
        for i in range(batch.size):
            assert (adv[i][batch.mask[i]] == adv[i][batch.mask[i]][0]).all() and adv[i][batch.mask[i]][0] != 0


def test_every_estimator_has_a_documented_equal_reward_behaviour():
    assert set(ADVANTAGES.names()) == GROUP_ZERO | BATCH_ZERO | CRITIC
