"""Policy losses (dual-clip, GSPO, CISPO, REINFORCE), TIS weights, KL in the reward and its controller, and DAPO's
overlong penalty, against hand-computed values and slow reference computations (ALGORITHMS.md sections 0-3, 11)."""

import math

import pytest
import torch

from reasonrl.algos import POLICY_LOSSES, aggregate
from reasonrl.algos.kl import KLController, fold_kl_into_rewards
from reasonrl.algos.losses import tis_weights
from reasonrl.algos.shaping import overlong_penalty, shape_overlong
from reasonrl.config import CISPOLoss, GSPOLoss, OverlongConfig, PPOClipLoss, ReinforceLoss
from reasonrl.types import Example, Trajectory
from tests.batches import make_batch

DEFAULTS = {"ppo_clip": PPOClipLoss(), "gspo": GSPOLoss(), "cispo": CISPOLoss(), "reinforce": ReinforceLoss()}


def one_token(loss: str, cfg, rho: float, adv: float) -> tuple[float, float]:
    """(loss value, d loss / d logp) for one token with ratio rho and advantage adv."""
    logp = torch.tensor([[math.log(rho)]], requires_grad=True)
    out, _ = POLICY_LOSSES.get(loss)(
        logp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1, dtype=torch.bool), cfg
    )
    out.sum().backward()
    return out.item(), logp.grad.item()


def test_dual_clip_floors_negative_advantages():
    cfg = PPOClipLoss(clip_ratio_c=3.0)
    # A < 0 and rho = 5: PPO's loss would be -rho A = 5; dual-clip caps it at -c A = 3, with zero gradient.
    assert one_token("ppo_clip", cfg, 5.0, -1.0) == pytest.approx((3.0, 0.0))
    # rho = 2: the loss 2 is under the floor, so plain PPO applies: gradient -A rho = 2.
    assert one_token("ppo_clip", cfg, 2.0, -1.0) == pytest.approx((2.0, 2.0))
    # Without dual-clip the large-ratio loss is unbounded.
    assert one_token("ppo_clip", PPOClipLoss(), 5.0, -1.0) == pytest.approx((5.0, 5.0))
    # A > 0 is untouched: rho = 5 is clipped at 1.2 as usual.
    assert one_token("ppo_clip", cfg, 5.0, 1.0) == pytest.approx((-1.2, 0.0))


def test_ppo_dual_clip_matches_a_slow_loop():
    torch.manual_seed(0)
    logp, old, adv = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(
        logp, old, adv, torch.ones(4, 5, dtype=torch.bool), PPOClipLoss(clip_low=0.2, clip_high=0.28, clip_ratio_c=3.0)
    )
    for i in range(4):
        for t in range(5):
            rho, a = math.exp(logp[i, t] - old[i, t]), adv[i, t].item()
            want = max(-rho * a, -min(max(rho, 0.8), 1.28) * a)
            if a < 0:
                want = min(want, -3.0 * a)
            assert loss[i, t].item() == pytest.approx(want, rel=1e-5)
    assert 0 < metrics["dual_clip_frac"] < 1


def test_gspo_sequence_ratio_is_the_geometric_mean_of_token_ratios():
    torch.manual_seed(1)
    logp, old = torch.randn(3, 6) * 0.1, torch.randn(3, 6) * 0.1
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3, [False, True, True, True, True, False]])
    _, metrics = POLICY_LOSSES.get("gspo")(logp, old, torch.ones(3, 6), mask, GSPOLoss(clip_low=0.99, clip_high=10))
    s = [
        math.exp(sum((logp[i, t] - old[i, t]).item() for t in range(6) if mask[i, t]) / int(mask[i].sum()))
        for i in range(3)
    ]
    # every token carries its sequence's s_i: the token-weighted mean of the ratios is sum_i |o_i| s_i / sum |o|
    lengths = mask.sum(-1).tolist()
    assert metrics["ratio_mean"] == pytest.approx(sum(n * x for n, x in zip(lengths, s)) / sum(lengths), rel=1e-6)


@pytest.mark.parametrize("scale", [0.0005, 0.3])  # inside the clip range, and far outside it (clipped sequences)
def test_gspo_token_gradient_equals_sequence_level_gspo(scale):
    """J = (1/G) sum_i min(s_i A_i, clip(s_i) A_i), s_i = exp(mean_t(logp - old)): GSPO-token aggregated with
    seq-mean-token-mean has the same gradient when A is constant within each sequence."""
    torch.manual_seed(2)
    cfg = GSPOLoss()
    old = torch.randn(4, 7) * 0.5
    base = old + torch.randn(4, 7) * scale
    mask = torch.rand(4, 7) > 0.3
    mask[:, 0] = True
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5])[:, None].expand(4, 7)
    logp = base.clone().requires_grad_(True)
    per_token, _ = POLICY_LOSSES.get("gspo")(logp, old, adv, mask, cfg)
    aggregate(per_token, mask, "seq-mean-token-mean", batch_tokens=int(mask.sum()), batch_seqs=4, max_len=7).backward()
    reference = base.clone().requires_grad_(True)
    m = mask.float()
    s = torch.exp(((reference - old) * m).sum(-1) / m.sum(-1))  # (B,)
    a = adv[:, 0]
    objective = torch.minimum(s * a, s.clamp(1 - cfg.clip_low, 1 + cfg.clip_high) * a).mean()
    (-objective).backward()
    assert torch.allclose(logp.grad, reference.grad, atol=1e-6)
    assert (logp.grad[~mask] == 0).all()


def test_cispo_keeps_the_gradient_of_clipped_tokens_with_a_capped_weight():
    cfg = CISPOLoss(clip_high=2.0)
    # rho = 3 > cap: PPO would give zero gradient; CISPO gives -min(rho, cap) A = -2 A, value -2 A.
    assert one_token("cispo", cfg, 3.0, 1.0) == pytest.approx((-2.0, -2.0))
    assert one_token("cispo", cfg, 1.5, -1.0) == pytest.approx((1.5, 1.5))  # under the cap: -rho A
    assert one_token("ppo_clip", PPOClipLoss(), 3.0, 1.0)[1] == 0.0


def test_cispo_has_the_gradient_of_trls_form():
    # TRL writes CISPO as -sg(min(rho, cap)) * A * logp: a different value, the same gradient (docs/algorithms.md).
    torch.manual_seed(0)
    old, adv, mask = torch.randn(3, 7) * 0.3, torch.randn(3, 7), torch.rand(3, 7) > 0.2
    ours = (torch.randn(3, 7) * 0.3).requires_grad_()
    theirs = ours.detach().clone().requires_grad_()
    POLICY_LOSSES.get("cispo")(ours, old, adv, mask, CISPOLoss(clip_high=1.1))[0].sum().backward()
    weight = torch.exp(theirs - old).clamp(max=1.1).detach()
    (-weight * adv * theirs * mask).sum().backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)


def test_reinforce_is_unclipped_importance_weighted():
    assert one_token("reinforce", ReinforceLoss(), 3.0, 1.0) == pytest.approx((-3.0, -3.0))
    assert one_token("reinforce", ReinforceLoss(), 0.5, -2.0) == pytest.approx((1.0, 1.0))


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_loss_on_policy_is_the_plain_policy_gradient(name):
    torch.manual_seed(3)
    logp = (torch.randn(3, 5) * 0.5).requires_grad_(True)
    adv = torch.randn(3, 5)
    mask = torch.rand(3, 5) > 0.3
    loss, metrics = POLICY_LOSSES.get(name)(logp, logp.detach(), adv, mask, DEFAULTS[name])
    loss.sum().backward()
    assert torch.allclose(logp.grad, -adv * mask, atol=1e-6), name  # masked tokens: exactly zero
    assert metrics["ratio_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", POLICY_LOSSES.names())
def test_every_loss_gives_masked_tokens_zero_gradient_off_policy(name):
    torch.manual_seed(4)
    logp = (torch.randn(3, 5) * 0.5).requires_grad_(True)
    mask = torch.rand(3, 5) > 0.4
    mask[:, 0] = True
    loss, _ = POLICY_LOSSES.get(name)(
        logp, logp.detach() + 0.3 * torch.randn(3, 5), torch.randn(3, 5), mask, DEFAULTS[name]
    )
    loss.sum().backward()
    assert (logp.grad[~mask] == 0).all() and (loss[~mask] == 0).all()


def test_tis_weights_are_truncated_ratios_between_trainer_and_sampler():
    old = torch.tensor([[0.0, -1.0, -2.0]])
    sampler = torch.tensor([[0.0, -2.0, -1.0]])
    w = tis_weights(old, sampler, cap=2.0)
    assert torch.allclose(w, torch.tensor([[1.0, 2.0, math.exp(-1.0)]]))  # e^1 = 2.72 is capped at 2
    assert not w.requires_grad


def test_kl_folded_into_the_reward_is_k1_on_rollout_logprobs():
    batch = make_batch([1.0, 0.0], group_size=2, lengths=[3, 2], width=4)
    batch.old_logp = torch.full(batch.mask.shape, -1.0)
    batch.ref_logp = torch.full(batch.mask.shape, -1.5)  # k1 = old - ref = 0.5 on every token
    kl = fold_kl_into_rewards(batch, coef=0.1, estimator="k1")
    assert kl == pytest.approx(0.5)
    want = torch.tensor([[0.0, -0.05, -0.05, 0.95], [0.0, 0.0, -0.05, -0.05]])  # r_t = score [t = last] - 0.1 KL_t
    assert torch.allclose(batch.token_rewards, want)
    assert torch.allclose(batch.rewards, torch.tensor([1.0 - 0.15, 0.0 - 0.1]))  # the sequence form (RLOO)


def test_kl_controller_fixed_and_adaptive():
    fixed = KLController(0.1)
    fixed.update(5.0, 64)
    assert fixed.coef == 0.1
    adaptive = KLController(0.1, target=0.05, horizon=1000)
    adaptive.update(0.1, 64)  # KL twice the target: error clipped to +0.2
    assert adaptive.coef == pytest.approx(0.1 * (1 + 0.2 * 64 / 1000))
    adaptive.update(0.04, 64)  # below target: error -0.2
    assert adaptive.coef == pytest.approx(0.1 * (1 + 0.2 * 64 / 1000) * (1 - 0.2 * 64 / 1000))


def test_dapo_overlong_penalty_at_the_papers_lengths():
    # L_max - L_cache = 16384, L_cache = 4096 (ALGORITHMS.md section 3.2)
    assert [overlong_penalty(n, 20480, 4096) for n in (16384, 18432, 20480)] == [0.0, -0.5, -1.0]
    assert overlong_penalty(100, 20480, 4096) == 0.0 and overlong_penalty(20480, 20480, 0) == 0.0
    assert overlong_penalty(20480, 20480, 4096, penalty=0.5) == -0.5


def test_shape_overlong_adds_the_penalty_and_logs_it():
    trajectories = [
        Trajectory(
            example=Example(id=str(n), prompt=[]),
            group=0,
            tokens=[1] * (2 + n),
            mask=[False, False] + [True] * n,
            sampler_logp=[0.0] * (2 + n),
            completion="",
            reward=1.0,
        )
        for n in (4, 6, 8)
    ]
    shape_overlong(trajectories, max_len=8, cfg=OverlongConfig(buffer=4))
    assert [t.reward for t in trajectories] == [1.0, 0.5, 0.0]
    assert [t.reward_parts["overlong"] for t in trajectories] == [0.0, -0.5, -1.0]
    stepped = Trajectory(
        example=Example(id="s", prompt=[]),
        group=0,
        tokens=[1] * 10,
        mask=[False] * 2 + [True] * 8,
        sampler_logp=[0.0] * 10,
        completion="",
        reward=1.0,
        step_rewards=[0.4, 0.6],
        step_token_ends=[5, 9],
    )
    shape_overlong([stepped], max_len=8, cfg=OverlongConfig(buffer=4))
    assert stepped.reward == 0.0 and stepped.step_rewards == [0.4, -0.4]  # the last step carries the penalty
