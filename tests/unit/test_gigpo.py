"""GiGPO (arXiv:2505.10978): anchor-state groups and step advantages against a hand-worked example, a slow
per-step reference loop on random batches, the reduction to GRPO, and the token mask (ALGORITHMS.md section 4)."""

import random
import statistics

import pytest
import torch

from reasonrl.algos import ADVANTAGES
from reasonrl.algos.advantages import anchor_ids, spread_steps
from reasonrl.config import AlgoConfig, KLConfig
from tests.batches import make_batch, make_multiturn_batch

gigpo = ADVANTAGES.get("gigpo")

# Two prompt groups of three trajectories; each turn is (sampled tokens, step reward, state). Group 1 reuses the
# state keys A and B of group 0: anchor groups must not merge across prompt groups.
EPISODES = [
    [(2, 0.0, "A"), (1, 0.0, "B"), (3, 1.0, "C")],  # group 0
    [(1, 0.0, "A"), (2, 1.0, "B")],
    [(2, 0.0, "A"), (1, 0.0, "D"), (2, 0.5, "B")],
    [(1, 0.0, "A"), (2, 0.0, "B")],  # group 1
    [(2, 0.0, "A"), (1, 0.0, "B"), (1, 1.0, "E")],
    [(3, 0.0, "A"), (2, 1.0, "E")],
]
# By hand, gamma = 0.5, Bessel std, eps = 0.
# Discounted step returns R_k = r_k + 0.5 R_{k+1}:
#   row 0: A 0.25, B 0.5, C 1     row 1: A 0.5, B 1     row 2: A 0.125, D 0.25, B 0.5
#   row 3: A 0, B 0               row 4: A 0.25, B 0.5, E 1     row 5: A 0.5, E 1
# Episode level: group 0 rewards (1, 1, 0.5), mean 5/6, deviations (1/6, 1/6, -1/3), var (1/36+1/36+1/9)/2 = 1/12,
#   std 0.288675 -> (0.57735, 0.57735, -1.15470). Group 1 rewards (0, 1, 1), mean 2/3, var (4/9+1/9+1/9)/2 = 1/3,
#   std 0.57735 -> (-1.15470, 0.57735, 0.57735).
# Step level, group 0:
#   A {0.25, 0.5, 0.125}: mean 7/24, deviations (-1/24, 5/24, -4/24), var (1+25+16)/576/2 = 42/1152,
#     std 0.190941 -> (-0.218218, 1.091089, -0.872872)
#   B {0.5, 1, 0.5}: mean 2/3, deviations (-1/6, 1/3, -1/6), var (1/36+1/9+1/36)/2 = 1/12, std 0.288675
#     -> (-0.57735, 1.15470, -0.57735)
#   C {1} and D {0.25}: states seen once -> 0
# Step level, group 1:
#   A {0, 0.25, 0.5}: mean 0.25, var (0.0625*2)/2 = 0.0625, std 0.25 -> (-1, 0, 1)
#   B {0, 0.5}: mean 0.25, var (0.0625*2)/1 = 0.125, std 0.353553 -> (-0.707107, 0.707107)
#   E {1, 1}: equal returns -> 0
EPISODE_ADV = [0.57735, 0.57735, -1.15470, -1.15470, 0.57735, 0.57735]
STEP_ADV = [
    [-0.218218, -0.57735, 0.0],
    [1.091089, 1.15470],
    [-0.872872, 0.0, -0.57735],
    [-1.0, -0.707107],
    [0.0, 0.707107, 0.0],
    [1.0, 0.0],
]
CFG = AlgoConfig(gamma=0.5, std_eps=0.0)


def per_step(adv: torch.Tensor, batch) -> list[list[float]]:
    """The advantage at each row's step ends (the last token of each turn)."""
    return [adv[i][batch.step_ends[i]].tolist() for i in range(batch.size)]


def test_hand_worked_example_episode_and_step_levels():
    batch = make_multiturn_batch(EPISODES, group_size=3)
    episode = gigpo(batch, AlgoConfig(gamma=0.5, std_eps=0.0, gigpo_omega=0.0))
    for i, want in enumerate(EPISODE_ADV):
        assert torch.allclose(episode[i][batch.mask[i]], torch.tensor(want), atol=1e-5)
    for omega in (1.0, 0.5):
        adv = gigpo(batch, AlgoConfig(gamma=0.5, std_eps=0.0, gigpo_omega=omega))
        for i, steps in enumerate(per_step(adv, batch)):
            assert steps == pytest.approx([EPISODE_ADV[i] + omega * s for s in STEP_ADV[i]], abs=1e-5), i


def test_anchor_groups_are_states_within_a_prompt_group():
    batch = make_multiturn_batch(EPISODES, group_size=3)
    ids = anchor_ids(batch).tolist()
    names = [f"{i // 3}{state}" for i, turns in enumerate(EPISODES) for _, _, state in turns]
    assert len(set(ids)) == len(set(names)) == 7  # 0A 0B 0C 0D 1A 1B 1E, not the 5 keys
    for a, name_a in zip(ids, names):
        for b, name_b in zip(ids, names):
            assert (a == b) == (name_a == name_b)


def test_every_token_of_a_turn_gets_its_step_advantage_and_the_rest_zero():
    batch = make_multiturn_batch(EPISODES, group_size=3, observation=3)
    adv = gigpo(batch, CFG)
    assert (adv[~batch.mask] == 0).all()
    for i, turns in enumerate(EPISODES):  # tokens of turn k, in order, are the masked tokens of row i
        want = [EPISODE_ADV[i] + s for (n, _, _), s in zip(turns, STEP_ADV[i]) for _ in range(n)]
        assert adv[i][batch.mask[i]].tolist() == pytest.approx(want, abs=1e-5)


def test_spread_steps_fills_back_to_the_previous_end():
    ends = torch.tensor([[False, True, False, False, True, False], [False, False, True, False, False, False]])
    values = torch.tensor([[0.0, 2.0, 0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 5.0, 0.0, 0.0, 0.0]])
    assert spread_steps(values, ends).tolist() == [[2, 2, 3, 3, 3, 0], [5, 5, 5, 0, 0, 0]]


def reference(episodes, group_size: int, cfg: AlgoConfig) -> list[list[float]]:
    """Slow loop: the advantage of every sampled token of every row, in order."""

    def normalise(x: float, group: list[float]) -> float:
        if len(group) < 2 or max(group) == min(group):
            return 0.0
        mean = statistics.mean(group)
        std = statistics.stdev(group) if cfg.unbiased_std else statistics.pstdev(group)
        return (x - mean) / (std + cfg.std_eps) if cfg.scale_by_std else x - mean

    out = []
    for start in range(0, len(episodes), group_size):
        group = episodes[start : start + group_size]
        totals = [sum(r for _, r, _ in turns) for turns in group]
        returns = []
        for turns in group:
            running, row = 0.0, []
            for _, r, _ in reversed(turns):
                running = r + cfg.gamma * running
                row.insert(0, running)
            returns.append(row)
        anchors: dict[str, list[float]] = {}
        for turns, row in zip(group, returns):
            for (_, _, state), value in zip(turns, row):
                anchors.setdefault(state, []).append(value)
        for turns, row, total in zip(group, returns, totals):
            episode = total if group_size == 1 else normalise(total, totals)
            out.append(
                [
                    episode + cfg.gigpo_omega * normalise(value, anchors[state])
                    for (n, _, state), value in zip(turns, row)
                    for _ in range(n)
                ]
            )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_slow_reference_loop_on_random_batches(seed):
    rng = random.Random(seed)
    group_size = rng.choice([2, 3, 4])
    episodes = [
        [
            (rng.randint(1, 3), rng.choice([0.0, 0.0, 0.5, 1.0, rng.random()]), f"s{rng.randint(0, 3)}")
            for _ in range(rng.randint(1, 4))
        ]
        for _ in range(group_size * rng.randint(1, 3))
    ]
    cfg = AlgoConfig(
        gamma=rng.choice([1.0, 0.95, 0.5]),
        gigpo_omega=rng.choice([1.0, 0.3]),
        scale_by_std=seed % 2 == 0,
        unbiased_std=seed % 3 != 0,
    )
    batch = make_multiturn_batch(episodes, group_size, observation=rng.randint(1, 3))
    adv = gigpo(batch, cfg)
    assert torch.isfinite(adv).all() and (adv[~batch.mask] == 0).all()
    for i, want in enumerate(reference(episodes, group_size, cfg)):
        assert adv[i][batch.mask[i]].tolist() == pytest.approx(want, abs=1e-4), i


def test_single_step_trajectories_reduce_to_grpo():
    rewards = [1.0, 0.0, 0.5, 0.2, 0.9, 0.9]
    for cfg in (AlgoConfig(), AlgoConfig(scale_by_std=False), AlgoConfig(unbiased_std=False, gigpo_omega=0.4)):
        # Without state keys every step is its own state: seen once, so the step level is 0 for any omega.
        batch = make_batch(rewards, group_size=3, lengths=[2, 5, 3, 4, 1, 5])
        assert torch.allclose(gigpo(batch, cfg), ADVANTAGES.get("grpo")(batch, cfg), atol=1e-6)
        # One shared first state (every trajectory of a group starts there, as in rollout()): its anchor group is
        # the whole prompt group and a single step's return is the reward, so A = (1 + omega) * grpo ...
        shared = make_multiturn_batch([[(n, r, "start")] for n, r in zip([2, 5, 3, 4, 1, 5], rewards)], 3)
        grpo = ADVANTAGES.get("grpo")(shared, cfg)
        assert torch.allclose(gigpo(shared, cfg), (1 + cfg.gigpo_omega) * grpo, atol=1e-5)
        # ... and omega = 0 is grpo.
        no_step = AlgoConfig(scale_by_std=cfg.scale_by_std, unbiased_std=cfg.unbiased_std, gigpo_omega=0.0)
        assert torch.allclose(gigpo(shared, no_step), ADVANTAGES.get("grpo")(shared, no_step), atol=1e-6)


def test_equal_rewards_give_exactly_zero_without_nan():
    # float32 means of 0.1s are not exactly 0.1: the equal-values rule, not the arithmetic, gives the zeros
    episodes = [[(1, 0.1, "A"), (2, 0.0, "B")], [(2, 0.1, "A"), (1, 0.0, "B")], [(1, 0.1, "A"), (1, 0.0, "C")]]
    adv = gigpo(make_multiturn_batch(episodes, group_size=3), AlgoConfig(std_eps=0.0))
    assert torch.isfinite(adv).all() and (adv == 0).all()


def test_negative_omega_and_kl_in_reward_are_rejected():
    with pytest.raises(ValueError, match="gigpo_omega must be >= 0"):
        AlgoConfig(gigpo_omega=-1.0)
    with pytest.raises(ValueError, match="placement=reward is not defined for algo.advantage=gigpo"):
        AlgoConfig(advantage="gigpo", kl=KLConfig(coef=0.1, placement="reward"))
