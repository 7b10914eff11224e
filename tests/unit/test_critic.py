"""The critic for gae: clipped value loss by hand, value loss falls on a fixed batch, checkpoint round trip,
token-budget micro-batches."""

import pytest
import torch

from reasonrl.critic import Critic, value_loss
from reasonrl.types import Example, Trajectory, collate
from reasonrl.update import row_slices
from tests.helpers import tiny_config


def test_clipped_value_loss_hand_values():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    values = torch.tensor([[1.0, 0.2, -1.0]], requires_grad=True)
    returns = torch.tensor([[2.0, 1.0, 0.0]])
    loss, metrics = value_loss(values, old, returns, torch.ones(1, 3, dtype=torch.bool), clip=0.5)
    # t=0: V=1 clipped to 0.5: max((1-2)^2, (0.5-2)^2) = 2.25 -> 1.125, and no gradient through the clipped term
    # t=1: inside the clip: (0.2-1)^2 = 0.64 -> 0.32; t=2: V=-1 clipped to -0.5: max(1, 0.25) = 1 -> 0.5
    assert torch.allclose(loss, torch.tensor([[1.125, 0.32, 0.5]]))
    loss.sum().backward()
    assert torch.allclose(values.grad, torch.tensor([[0.0, -0.8, -1.0]]))
    assert metrics["clip_frac"] == pytest.approx(1 / 3)


def fixed_batch(seed=0):
    torch.manual_seed(seed)
    trajectories = []
    for i in range(8):
        prompt = torch.randint(3, 90, (4,)).tolist()
        completion = torch.randint(3, 90, (3 + i % 4,)).tolist()
        trajectories.append(
            Trajectory(
                example=Example(id=str(i), prompt=[]),
                group=i // 4,
                tokens=prompt + completion,
                mask=[False] * 4 + [True] * len(completion),
                sampler_logp=[0.0] * (4 + len(completion)),
                completion="",
                reward=float(i % 3) / 2,
            )
        )
    return collate(trajectories, pad_id=0, group_size=4)


def test_critic_value_loss_falls_on_a_fixed_batch(tmp_path):
    cfg = tiny_config(tmp_path, "algo.advantage=gae", "algo.critic.lr=0.01")
    critic = Critic(cfg)
    batch = fixed_batch()
    assert (critic.values(batch) == 0).all()  # zero-initialised head: V = 0 before training
    losses = []
    for _ in range(30):
        batch.values = critic.values(batch)  # as in the loop: values before each update
        losses.append(critic.update(batch)["critic/value_loss"])
    print(f"critic value loss: first {losses[0]:.4f}, last {losses[-1]:.4f}")
    assert losses[-1] < 0.2 * losses[0], losses
    values = critic.values(batch)
    assert (values[~batch.mask] == 0).all()
    # with gamma = lam = 1 every return is the final reward: the critic has learned it
    assert torch.allclose(values[batch.mask], batch.returns[batch.mask], atol=0.15)


def test_critic_checkpoint_round_trip(tmp_path):
    cfg = tiny_config(tmp_path, "algo.advantage=gae", "algo.critic.lr=0.01")
    critic = Critic(cfg)
    batch = fixed_batch()
    for _ in range(3):
        batch.values = critic.values(batch)
        critic.update(batch)
    critic.save(tmp_path)
    other = Critic(cfg)
    other.load(tmp_path)
    assert torch.equal(other.values(batch), critic.values(batch))
    assert other.optimizer.state_dict()["state"].keys() == critic.optimizer.state_dict()["state"].keys()


def test_critic_token_budget_micro_batches_change_nothing(tmp_path):
    """optim.micro_batch_tokens splits the critic's passes too; values and the update come out the same."""
    batch = fixed_batch()
    assert len(row_slices(batch, 8, 16)) >= 4  # the budget really splits the batch
    critics = []
    for budget in ("null", "16"):  # 16 tokens: one or two of these 7-10 token rows at a time
        torch.manual_seed(0)
        cfg = tiny_config(
            tmp_path,
            "algo.advantage=gae",
            "algo.critic.lr=0.01",
            "optim.micro_batch_size=8",
            f"optim.micro_batch_tokens={budget}",
        )
        critic = Critic(cfg)
        for _ in range(2):
            batch.values = critic.values(batch)
            critic.update(batch)
        critics.append(critic)
    whole, split = (c.values(batch) for c in critics)
    assert not torch.equal(whole, torch.zeros_like(whole))
    assert torch.allclose(whole, split, atol=1e-5), (whole - split).abs().max()
