"""Advantage estimators: fn(batch, cfg) -> (B, T) advantages, zero where mask is False. Selected by
`algo.advantage`; the loop calls `ADVANTAGES.get(name)(batch, cfg.algo)` and never branches on the name.

    grpo            A_i = (r_i - mean_group r) / (std_group r + eps)         DeepSeekMath, arXiv:2402.03300
    dr_grpo         A_i = r_i - mean_group r                                   Dr.GRPO, arXiv:2503.20783
    rloo            A_i = r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean)       RLOO, arXiv:2402.14740
    reinforce_pp    A_t = whiten_batch(sum_{s >= t} gamma^(s-t) r_s)           REINFORCE++, arXiv:2501.03262
    reinforce_pp_baseline  A_i = whiten_batch(r_i - mean_group r)              REINFORCE++-baseline
    gae             A_t = whiten_batch(sum_l (gamma lam)^l delta_{t+l}), delta_t = r_t + gamma V_{t+1} - V_t  (PPO)
    grpo_process    A_t = sum of the group-normalised rewards of the steps ending at or after t (DeepSeekMath 4.1.3)
    gigpo           A_t = grpo's A_i + omega * (R_k - mean) / std over the steps taken in the same state as the
                    step k that token t belongs to, R_k = r_k + gamma R_{k+1}            GiGPO, arXiv:2505.10978

Outcome estimators read `batch.rewards` (B,); token-level ones read `batch.token_rewards` (B, T) (the reward on
the last sampled token); with algo.kl.placement=reward both already carry the KL penalty. The std is
Bessel-corrected by default (algo.unbiased_std), as in TRL and verl: rewards (1,0,1,0) give +-0.866, not +-1.

Equal rewards in a group give exactly zero advantage (no NaN) for grpo, dr_grpo, rloo, grpo_process and gigpo
(for gigpo: equal step rewards, so that the step returns of a state are equal too).
reinforce_pp and reinforce_pp_baseline whiten over the whole batch, as the paper and verl do: they give zero
when every return in the batch is equal, but the batch-mean shift gives a degenerate group a small non-zero
advantage. gae gives zero only where r_t + gamma V_{t+1} = V_t. A group of one sample has no baseline: grpo,
dr_grpo, rloo and reinforce_pp_baseline keep its raw reward (verl's rule), and grpo_process with fewer than two
step rewards in a group keeps the raw step rewards. gigpo's episode part follows grpo; its step part gives a
state seen once in a group zero (the GiGPO reference code's rule, the opposite of verl's GRPO rule).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from reasonrl.config import AlgoConfig
from reasonrl.registry import Registry
from reasonrl.types import Batch

ADVANTAGES: Registry = Registry("advantage estimator")


def uses_critic(fn: Callable[[Batch, AlgoConfig], Tensor]) -> Callable[[Batch, AlgoConfig], Tensor]:
    """Mark an estimator that reads critic values (batch.values): the loop then builds and trains a critic."""
    fn.needs_critic = True  # type: ignore[attr-defined]
    return fn


def needs_critic(fn: Callable[..., Tensor]) -> bool:
    return bool(getattr(fn, "needs_critic", False))


def group_normalise(rewards: Tensor, group_size: int, scale_by_std: bool, eps: float, unbiased: bool = True) -> Tensor:
    """(B,) rewards -> (B,) advantages, normalised within contiguous groups of group_size."""
    r = rewards.float().view(-1, group_size)  # (P, G)
    if group_size == 1:
        return r.view(-1)
    adv = r - r.mean(dim=1, keepdim=True)  # (P, G)
    if scale_by_std:
        adv = adv / (r.std(dim=1, keepdim=True, unbiased=unbiased) + eps)  # (P, G)
    return adv.masked_fill(equal_groups(r), 0.0).view(-1)  # (B,)


def equal_groups(r: Tensor) -> Tensor:
    """(P, G) rewards -> (P, 1) True where a group's rewards are all equal. Their advantage is set to exactly 0:
    r - mean can be 1 ulp off zero in floating point, and 0 / (0 + eps) is NaN when eps = 0."""
    return r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries, Bessel-corrected var (verl masked_whiten); (B, T)."""
    m = mask.float()  # (B, T)
    if not mask.any() or x[mask].max() == x[mask].min():
        return torch.zeros_like(x)  # constants whiten to exactly 0, not to rounding error / sqrt(eps)
    count = m.sum()
    mean = (x * m).sum() / count
    var = ((x - mean).pow(2) * m).sum() / (count - 1).clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * m  # (B, T)


def discounted_returns(token_rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """(B, T) G_t = sum_{s >= t} gamma^(s-t) r_s over trained positions; untrained positions (padding, tool
    output) are skipped, so a final reward reaches every earlier turn."""
    m = mask.float()  # (B, T)
    running = token_rewards.new_zeros(token_rewards.shape[0])  # (B,)
    out = torch.zeros_like(token_rewards)  # (B, T)
    for t in reversed(range(token_rewards.shape[1])):
        running = m[:, t] * (token_rewards[:, t] + gamma * running) + (1 - m[:, t]) * running
        out[:, t] = running
    return out * m  # (B, T)


def gae_advantages(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (verl compute_gae_advantage_return) -> raw advantages and returns, (B, T).

    delta_t = r_t + gamma V_next - V_t, A_t = delta_t + gamma lam A_next, returns_t = A_t + V_t; untrained
    positions carry V_next and A_next through unchanged (multi-turn observations are skipped).
    """
    m = mask.float()  # (B, T)
    next_value = values.new_zeros(values.shape[0])  # (B,)
    next_adv = values.new_zeros(values.shape[0])  # (B,)
    adv = torch.zeros_like(values)  # (B, T)
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        a = delta + gamma * lam * next_adv  # (B,)
        next_value = m[:, t] * values[:, t] + (1 - m[:, t]) * next_value
        next_adv = m[:, t] * a + (1 - m[:, t]) * next_adv
        adv[:, t] = next_adv
    return adv * m, (adv + values) * m  # (B, T), (B, T)


@ADVANTAGES.register("grpo")
def grpo(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """GRPO outcome supervision (arXiv:2402.03300); cfg.scale_by_std=False gives Dr.GRPO's advantage."""
    adv = group_normalise(batch.rewards, batch.group_size, cfg.scale_by_std, cfg.std_eps, cfg.unbiased_std)  # (B,)
    return adv[:, None] * batch.mask  # (B, T)


@ADVANTAGES.register("dr_grpo")
def dr_grpo(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """Dr.GRPO (arXiv:2503.20783): reward minus the group mean, no std (no difficulty bias). Pair it with
    algo.aggregation=seq-mean-token-sum-norm to remove the length bias too (recipes/dr_grpo.yaml)."""
    adv = group_normalise(batch.rewards, batch.group_size, scale_by_std=False, eps=0.0)  # (B,)
    return adv[:, None] * batch.mask  # (B, T)


@ADVANTAGES.register("rloo")
def rloo(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """Leave-one-out baseline (Ahmadian et al. 2024, arXiv:2402.14740): A_i = r_i - mean_{j != i} r_j."""
    g = batch.group_size
    r = batch.rewards.float().view(-1, g)  # (P, G)
    if g == 1:
        return r.view(-1, 1) * batch.mask  # (B, T)
    baseline = (r.sum(1, keepdim=True) - r) / (g - 1)  # (P, G)
    adv = (r - baseline).masked_fill(equal_groups(r), 0.0)  # (P, G)
    return adv.view(-1, 1) * batch.mask  # (B, T)


@ADVANTAGES.register("reinforce_pp")
def reinforce_pp(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """REINFORCE++ (arXiv:2501.03262): token returns (KL in the reward per token when algo.kl.placement=reward),
    whitened over every trained token of the batch; no baseline."""
    assert batch.token_rewards is not None, "collate builds token_rewards"
    returns = discounted_returns(batch.token_rewards, batch.mask, cfg.gamma)  # (B, T)
    return masked_whiten(returns, batch.mask)  # (B, T)


@ADVANTAGES.register("reinforce_pp_baseline")
def reinforce_pp_baseline(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """REINFORCE++-baseline (verl reinforce_plus_plus_baseline): subtract the group mean reward, then whiten over
    every trained token of the batch. A group of one keeps its raw reward before whitening."""
    adv = group_normalise(batch.rewards, batch.group_size, scale_by_std=False, eps=0.0)  # (B,)
    return masked_whiten(adv[:, None].expand_as(batch.mask), batch.mask)  # (B, T)


@ADVANTAGES.register("gae")
@uses_critic
def gae(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """PPO with a learned critic (InstructGPT/verl): GAE on token rewards with the critic's values, whitened."""
    if batch.values is None:
        raise ValueError(
            "algo.advantage=gae needs critic values in batch.values; the training loop computes them "
            "(reasonrl.critic.Critic.values) before the advantages"
        )
    assert batch.token_rewards is not None, "collate builds token_rewards"
    adv, _ = gae_advantages(batch.token_rewards, batch.values, batch.mask, cfg.gamma, cfg.lam)  # (B, T)
    return masked_whiten(adv, batch.mask)  # (B, T)


@ADVANTAGES.register("grpo_process")
def grpo_process(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """GRPO process supervision (arXiv:2402.03300 section 4.1.3): every step reward is normalised with the mean
    and std of all step rewards of its group; a token's advantage is the sum of the normalised rewards of the
    steps that end at or after it. One step per sample (a final reward only) is outcome supervision."""
    assert batch.step_rewards is not None and batch.step_ends is not None, "collate builds step rewards"
    b, t = batch.mask.shape
    ends = batch.step_ends.float().view(-1, batch.group_size * t)  # (P, G*T)
    r = batch.step_rewards.float().view(-1, batch.group_size * t)  # (P, G*T)
    count = ends.sum(1, keepdim=True)  # (P, 1)
    mean = (r * ends).sum(1, keepdim=True) / count.clamp(min=1)  # (P, 1)
    dof = count - 1 if cfg.unbiased_std else count
    std = ((r - mean).pow(2) * ends).sum(1, keepdim=True).div(dof.clamp(min=1)).sqrt()  # (P, 1)
    single = count < 2  # no baseline: keep the raw rewards, like a group of one in grpo
    scale = (std + cfg.std_eps if cfg.scale_by_std else torch.ones_like(std)).masked_fill(single, 1.0)
    mean = mean.masked_fill(single, 0.0)
    high = r.masked_fill(ends == 0, -torch.inf).max(1, keepdim=True).values  # (P, 1)
    low = r.masked_fill(ends == 0, torch.inf).min(1, keepdim=True).values  # (P, 1)
    normalised = ((r - mean) / scale * ends).masked_fill((high == low) & ~single, 0.0).view(b, t)  # (B, T)
    return normalised.flip(1).cumsum(1).flip(1) * batch.mask  # (B, T)


@ADVANTAGES.register("gigpo")
def gigpo(batch: Batch, cfg: AlgoConfig) -> Tensor:
    """GiGPO (Feng et al., arXiv:2505.10978): A = A_episode + omega * A_step, on the tokens of each step's turn.

    A_episode is grpo's advantage of the total reward (the paper's per-trajectory statistics). A_step normalises
    each step's discounted return R_k = r_k + gamma R_{k+1} (its own trajectory's step rewards) over its anchor
    group: the steps of the same prompt group taken in the same state (Batch.step_states), wherever in their
    trajectories they occur. A state seen once gets A_step = 0, as in the reference code (verl-agent
    core_gigpo.py); std or not follows algo.scale_by_std at both levels (the paper's "w/ std", "w/o std").
    The step part of a token is that of the step its turn ends: tokens after the previous step end through
    this step's end. With omega = 0, or no state seen twice in a group, it is grpo.
    """
    assert batch.step_rewards is not None and batch.step_ends is not None and batch.step_states is not None, (
        "collate builds step rewards, ends and states"
    )
    episode = group_normalise(batch.rewards, batch.group_size, cfg.scale_by_std, cfg.std_eps, cfg.unbiased_std)  # (B,)
    returns = discounted_returns(batch.step_rewards, batch.step_ends, cfg.gamma)  # (B, T) R_k at step ends
    step = torch.zeros_like(returns)  # (B, T)
    step[batch.step_ends] = anchor_normalise(
        returns[batch.step_ends], anchor_ids(batch), cfg.scale_by_std, cfg.std_eps, cfg.unbiased_std
    )  # (N,) one per step
    return (episode[:, None] + cfg.gigpo_omega * spread_steps(step, batch.step_ends)) * batch.mask  # (B, T)


def anchor_ids(batch: Batch) -> Tensor:
    """(N,) anchor group of every step (row-major over the step ends): equal ids for equal (prompt group,
    state) pairs. States never merge across prompt groups, even with equal keys."""
    assert batch.step_ends is not None and batch.step_states is not None
    prompt = torch.arange(batch.size, device=batch.mask.device) // batch.group_size  # (B,)
    states = batch.step_states.long()  # (B, T)
    key = prompt[:, None] * (int(states.max()) + 1) + states  # (B, T)
    return torch.unique(key[batch.step_ends], return_inverse=True)[1]  # (N,)


def anchor_normalise(values: Tensor, index: Tensor, scale_by_std: bool, eps: float, unbiased: bool) -> Tensor:
    """(N,) values -> (N,) (value - mean) / (std + eps) within the groups given by index (N,); without
    scale_by_std only the mean is removed. Groups of one, and groups whose values are all equal, give exactly 0."""
    groups = int(index.max()) + 1 if index.numel() else 0
    values = values.float()  # (N,)
    count = torch.zeros(groups, device=values.device).index_add(0, index, torch.ones_like(values))  # (S,)
    mean = torch.zeros(groups, device=values.device).index_add(0, index, values) / count  # (S,)
    centred = values - mean[index]  # (N,)
    if scale_by_std:
        dof = (count - 1 if unbiased else count).clamp(min=1)  # (S,)
        var = torch.zeros(groups, device=values.device).index_add(0, index, centred.pow(2)) / dof  # (S,)
        centred = centred / (var.sqrt()[index] + eps)  # (N,)
    high = torch.full((groups,), -torch.inf, device=values.device).scatter_reduce(0, index, values, "amax")
    low = torch.full((groups,), torch.inf, device=values.device).scatter_reduce(0, index, values, "amin")
    return centred.masked_fill((high == low)[index], 0.0)  # a singleton has high == low: no baseline, 0


def spread_steps(at_ends: Tensor, ends: Tensor) -> Tensor:
    """(B, T) values at step ends -> (B, T): every position takes the value of the first step end at or after
    it in its row (the turn it belongs to); positions after a row's last step end get 0."""
    before = ends.long().cumsum(1) - ends.long()  # (B, T) steps ended before t
    steps = int(ends.sum(1).max()) if ends.numel() else 0
    per_step = at_ends.new_zeros(ends.shape[0], steps + 1)  # (B, S+1); column S stays 0
    rows, cols = ends.nonzero(as_tuple=True)
    per_step[rows, before[rows, cols]] = at_ends[rows, cols]
    return per_step.gather(1, before.clamp(max=steps))  # (B, T)
