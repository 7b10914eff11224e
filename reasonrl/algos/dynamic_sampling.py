"""DAPO dynamic sampling with backfill (arXiv:2503.14476, section 3.2): groups whose rewards are all equal have
zero advantage and only dilute the batch, so they are dropped and more prompts are rolled out until the batch
holds prompts_per_step groups with a signal, for at most algo.dynamic_sampling.max_tries rollout rounds.

After the last round the step trains on the groups it has (a partial batch) and warns, rather than stopping a
long run on one hard batch; with no group left the update is skipped. Each round asks for the missing groups
divided by the keep rate seen so far (at most prompts_per_step prompts). Groups with a failed reward (NaN,
rewards.on_error=skip_group) are always dropped. Metrics: sampling/tries, sampling/prompts,
sampling/degenerate_groups (dropped), sampling/partial (1 when the batch is short).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from reasonrl.config import DynamicSamplingConfig
from reasonrl.types import Trajectory

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """The groups one step trains on and everything that was sampled to find them."""

    groups: list[list[Trajectory]]
    """Kept groups, renumbered 0..len-1 (each a list of group_size trajectories)."""
    sampled: list[Trajectory] = field(default_factory=list)
    """Every trajectory rolled out this step, kept or not (rollout statistics and logs)."""
    tries: int = 0
    """Rollout rounds run."""
    prompt_count: int = 0
    """Prompts rolled out over all rounds."""
    degenerate: int = 0
    failed: int = 0
    warning: str | None = None

    def metrics(self, dynamic: bool) -> dict[str, float]:
        out = {"rollout/dropped_groups": float(self.failed)}
        if dynamic:
            out |= {
                "sampling/tries": float(self.tries),
                "sampling/prompts": float(self.prompt_count),
                "sampling/degenerate_groups": float(self.degenerate),
                "sampling/partial": float(self.warning is not None),
            }
        return out


def is_degenerate(group: list[Trajectory]) -> bool:
    """All rewards equal: every group advantage is zero, so the group teaches nothing."""
    return max(t.reward for t in group) == min(t.reward for t in group)


def split_groups(trajectories: list[Trajectory], group_size: int) -> list[list[Trajectory]]:
    return [trajectories[i : i + group_size] for i in range(0, len(trajectories), group_size)]


def collect_groups(
    sample: Callable[[int, int], list[Trajectory]], prompts: int, group_size: int, cfg: DynamicSamplingConfig
) -> Collected:
    """Roll out with sample(round, n_prompts) -> n_prompts * group_size trajectories until `prompts` usable groups
    are found (dynamic sampling) or after one round (disabled: every group without a failed reward is kept)."""
    out = Collected(groups=[])
    rounds = cfg.max_tries if cfg.enabled else 1
    while out.tries < rounds and len(out.groups) < prompts:
        missing = prompts - len(out.groups)
        keep_rate = len(out.groups) / max(out.prompt_count, 1)
        n = prompts if out.tries == 0 or keep_rate == 0 else min(prompts, math.ceil(missing / keep_rate))
        trajectories = sample(out.tries, n)
        out.tries, out.prompt_count = out.tries + 1, out.prompt_count + n
        out.sampled.extend(trajectories)
        for group in split_groups(trajectories, group_size):
            if any(math.isnan(t.reward) for t in group):
                out.failed += 1
            elif cfg.enabled and is_degenerate(group):
                out.degenerate += 1
            else:
                out.groups.append(group)
    out.groups = [[dataclasses.replace(t, group=g) for t in group] for g, group in enumerate(out.groups[:prompts])]
    if cfg.enabled and len(out.groups) < prompts:
        out.warning = (
            f"dynamic sampling: only {len(out.groups)} of {prompts} groups have differing rewards after "
            f"{out.tries} rollout rounds ({out.prompt_count} prompts, {out.degenerate} groups with equal "
            f"rewards dropped); training on the partial batch"
            f"{'' if out.groups else ' (none: the update is skipped)'}. Raise "
            f"algo.dynamic_sampling.max_tries (now {cfg.max_tries}) or use prompts the policy solves "
            f"only sometimes."
        )
        log.warning(out.warning)
    return out
