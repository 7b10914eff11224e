"""Core data types: Example (a task instance), Trajectory (one sampled episode), Batch (tensors for the update).

Shape letters used in comments across the package:
    B rollouts in a batch, P prompts, G samples per prompt (B = P*G), T tokens (positions of logp),
    V vocabulary size.
Conventions:
    tokens (B, T+1); logp[:, t] = log p(tokens[:, t+1] | tokens[:, :t+1]), so logp, mask, adv are (B, T).
    mask is bool and True means "a token the policy sampled and is trained on"; prompt, environment output
    and padding are False. Only rollout.py builds masks.
    The G samples of one prompt are contiguous in a batch: rows g*G .. g*G+G-1 belong to group g.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # torch is imported lazily: reward worker processes unpickle Examples without it
    from torch import Tensor


class Message(TypedDict):
    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """One task instance."""

    id: str
    """Stable identifier, unique within a task (used for train/eval splits and rollout logs)."""
    prompt: list[Message]
    """The conversation shown to the model, before the chat template is applied."""
    answer: str | None = None
    """Reference answer, if the task has one."""
    task: str = ""
    """Name of the task this example came from, e.g. 'reasoning_gym:basic_arithmetic'."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Task-specific data, e.g. the reasoning-gym entry its scorer needs. Must be picklable."""
    source: str = ""
    """Where the example came from, for error messages: 'data.jsonl:12' or 'basic_arithmetic#seed=1,idx=3'."""


@dataclass
class StepResult:
    """What an environment returns for one action."""

    observation: list[Message] | None
    """Messages appended to the conversation before the next action (None when done)."""
    reward: float
    done: bool
    reward_parts: dict[str, float | None] = field(default_factory=dict)
    """Per-component rewards (unweighted), None where a component does not apply."""
    info: dict[str, Any] = field(default_factory=dict)
    reward_steps: list[tuple[int, float]] = field(default_factory=list)
    """(end offset in the action text, weighted reward) of each step that a StepScores reward reported; the
    rest of `reward` belongs to the action's last token. Empty: the whole reward is an outcome reward."""


@dataclass
class Trajectory:
    """One sampled episode. tokens/mask/sampler_logp have equal length (the whole conversation)."""

    example: Example
    group: int
    """Index of the prompt group this sample belongs to (samples of one group are contiguous)."""
    tokens: list[int]
    mask: list[bool]
    """mask[i] is True when tokens[i] was sampled by the policy."""
    sampler_logp: list[float]
    """Log-prob the sampler gave tokens[i] (0.0 where mask is False)."""
    completion: str
    """The decoded text the policy produced (all turns joined)."""
    reward: float = 0.0
    reward_parts: dict[str, float | None] = field(default_factory=dict)
    step_rewards: list[float] = field(default_factory=list)
    """Reward of each step (process supervision); empty: one step, rewarded with `reward`."""
    step_token_ends: list[int] = field(default_factory=list)
    """Index in `tokens` of the last token of each step (a sampled token); empty: the last sampled token."""
    step_states: list[str] = field(default_factory=list)
    """Key of the environment state each step's action was taken in (identical states: identical keys)."""
    truncated: bool = False
    """True when generation hit the token limit instead of ending with EOS."""
    num_turns: int = 1
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return sum(self.mask)


@dataclass
class Batch:
    """Trajectories collated into right-padded tensors. Rows keep the group order of the trajectories."""

    tokens: Tensor  # (B, T+1) long
    mask: Tensor  # (B, T) bool; mask[:, t] is about tokens[:, t+1]
    sampler_logp: Tensor  # (B, T) float
    rewards: Tensor  # (B,) float
    group_size: int  # G
    groups: Tensor | None = None  # (B,) long: the group (prompt) of each row
    truncated: Tensor | None = None  # (B,) bool: hit the token limit (no EOS)
    token_rewards: Tensor | None = None  # (B, T): the reward on each row's last sampled token, 0 elsewhere
    step_rewards: Tensor | None = None  # (B, T): the reward of the step that ends at t, 0 elsewhere
    step_ends: Tensor | None = None  # (B, T) bool: True where a step ends
    step_states: Tensor | None = None  # (B, T) long: id (>= 1) of the state the step ending at t acted in
    adv: Tensor | None = None  # (B, T)
    old_logp: Tensor | None = None  # (B, T)
    ref_logp: Tensor | None = None  # (B, T)
    values: Tensor | None = None  # (B, T): critic values before the update (gae)
    returns: Tensor | None = None  # (B, T): the critic's regression targets (gae)

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: Any) -> Batch:
        """The same batch with every tensor on `device` (a no-op when already there)."""
        import dataclasses

        moved = {
            f.name: getattr(self, f.name).to(device) if hasattr(getattr(self, f.name), "to") else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }
        return Batch(**moved)

    def rows(self, index: slice | Tensor) -> Batch:
        """A micro-batch: the same fields restricted to some rows, trimmed to their longest row."""
        mask = self.mask[index]
        used = int(mask.any(0).nonzero().max().item()) + 1 if mask.any() else 1

        def cut(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index][:, :used]

        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]

        return Batch(
            tokens=self.tokens[index][:, : used + 1],
            mask=mask[:, :used],
            sampler_logp=self.sampler_logp[index][:, :used],
            rewards=self.rewards[index],
            group_size=self.group_size,
            groups=pick(self.groups),
            truncated=pick(self.truncated),
            token_rewards=cut(self.token_rewards),
            step_rewards=cut(self.step_rewards),
            step_ends=cut(self.step_ends),
            step_states=cut(self.step_states),
            adv=cut(self.adv),
            old_logp=cut(self.old_logp),
            ref_logp=cut(self.ref_logp),
            values=cut(self.values),
            returns=cut(self.returns),
        )


def collate(trajectories: list[Trajectory], pad_id: int, group_size: int) -> Batch:
    """Right-pad trajectories into a Batch. Group order is kept; padding has mask False."""
    import torch

    assert len(trajectories) % group_size == 0, "a batch holds whole groups"
    width = max(len(t.tokens) for t in trajectories)
    tokens = torch.full((len(trajectories), width), pad_id, dtype=torch.long)  # (B, T+1)
    mask = torch.zeros(len(trajectories), width, dtype=torch.bool)  # (B, T+1)
    logp = torch.zeros(len(trajectories), width)  # (B, T+1)
    for i, t in enumerate(trajectories):
        n = len(t.tokens)
        tokens[i, :n] = torch.tensor(t.tokens)
        mask[i, :n] = torch.tensor(t.mask)
        logp[i, :n] = torch.tensor(t.sampler_logp)
    rewards = torch.tensor([t.reward for t in trajectories], dtype=torch.float32)  # (B,)
    # Shift by one: position t predicts token t+1.
    groups = torch.tensor([t.group for t in trajectories], dtype=torch.long)  # (B,)
    truncated = torch.tensor([t.truncated for t in trajectories], dtype=torch.bool)  # (B,)
    mask = mask[:, 1:]  # (B, T)
    last = mask.shape[1] - 1 - mask.flip(1).float().argmax(1)  # (B,) last sampled position
    token_rewards = torch.zeros(mask.shape).scatter(1, last[:, None], rewards[:, None]) * mask  # (B, T)
    step_rewards, step_ends = step_tensors(trajectories, mask, last)  # (B, T), (B, T)
    step_states = state_tensor(trajectories, step_ends)  # (B, T)
    return Batch(
        tokens=tokens,
        mask=mask,
        sampler_logp=logp[:, 1:],
        rewards=rewards,
        group_size=group_size,
        groups=groups,
        truncated=truncated,
        token_rewards=token_rewards,
        step_rewards=step_rewards,
        step_ends=step_ends,
        step_states=step_states,
    )


def step_tensors(trajectories: list[Trajectory], mask: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
    """Per-step rewards placed at the position of each step's last token: (B, T) rewards, (B, T) bool ends.

    A trajectory without step boundaries is one step that ends at its last sampled token, rewarded with its
    reward (outcome supervision). Token index i of Trajectory.tokens is position i - 1 of the (B, T) tensors.
    """
    import torch

    step_rewards = torch.zeros(mask.shape)  # (B, T)
    step_ends = torch.zeros(mask.shape, dtype=torch.bool)  # (B, T)
    for i, t in enumerate(trajectories):
        ends = [e - 1 for e in t.step_token_ends] or [int(last[i])]
        values = t.step_rewards if t.step_token_ends else [t.reward]
        if len(t.step_rewards) > 1 and not t.step_token_ends:
            raise ValueError(
                f"trajectory {i} ({t.example.id}) has {len(t.step_rewards)} step rewards but no "
                "step_token_ends; give the token index where each step ends"
            )
        if len(values) != len(ends) or not all(0 <= e < mask.shape[1] and mask[i, e] for e in ends):
            raise ValueError(
                f"trajectory {i} ({t.example.id}): {len(values)} step rewards for step ends "
                f"{t.step_token_ends}; each step needs one reward and must end on a sampled token"
            )
        step_ends[i, ends] = True
        step_rewards[i, ends] = torch.tensor(values, dtype=torch.float32)
    return step_rewards, step_ends


def state_tensor(trajectories: list[Trajectory], step_ends: Tensor) -> Tensor:
    """(B, T) long: at each step end, an id for the state key the step acted in (equal keys, equal ids; ids
    start at 1), 0 elsewhere. Trajectories without state keys get a fresh id per step."""
    import torch

    ids: dict[str, int] = {}
    out = torch.zeros(step_ends.shape, dtype=torch.long)  # (B, T)
    for i, t in enumerate(trajectories):
        ends = step_ends[i].nonzero().flatten().tolist()
        keys = t.step_states if len(t.step_states) == len(ends) else [f"#{i}:{k}" for k in range(len(ends))]
        for position, key in zip(ends, keys):
            out[i, position] = ids.setdefault(key, len(ids) + 1)
    return out
