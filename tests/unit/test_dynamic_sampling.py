"""DAPO dynamic sampling with backfill: degenerate groups are dropped and refilled, bounded and reported."""

import logging
import math

from reasonrl.algos.dynamic_sampling import collect_groups, is_degenerate
from reasonrl.config import DynamicSamplingConfig
from reasonrl.types import Example, Trajectory


class FakeSampler:
    """sample(round, n) -> n groups of size g; a group's rewards come from a list of patterns, in order."""

    def __init__(self, patterns, g=4):
        self.patterns, self.g, self.calls, self.prompts = list(patterns), g, [], 0

    def __call__(self, attempt, n):
        self.calls.append((attempt, n))
        out = []
        for k in range(n):
            rewards = self.patterns.pop(0) if self.patterns else [1.0] * self.g
            example = Example(id=f"p{self.prompts}", prompt=[])
            self.prompts += 1
            out += [
                Trajectory(
                    example=example,
                    group=k,
                    tokens=[1, 2],
                    mask=[False, True],
                    sampler_logp=[0.0, 0.0],
                    completion="",
                    reward=r,
                )
                for r in rewards
            ]
        return out


MIXED, ALL_RIGHT, ALL_WRONG = [1.0, 0.0, 0.0, 1.0], [1.0] * 4, [0.0] * 4


def test_backfill_fills_the_batch_with_non_degenerate_groups():
    sampler = FakeSampler([MIXED, ALL_WRONG, MIXED, MIXED, ALL_RIGHT, ALL_WRONG, MIXED, MIXED])
    out = collect_groups(sampler, prompts=4, group_size=4, cfg=DynamicSamplingConfig(enabled=True, max_tries=5))
    assert len(out.groups) == 4 and not any(is_degenerate(g) for g in out.groups)
    assert [t.group for g in out.groups for t in g] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4  # renumbered
    assert [g[0].example.id for g in out.groups] == ["p0", "p2", "p3", "p6"]  # p7 is cut: the batch is full
    # round 1 keeps 3 of 4 and needs 1 more: at a keep rate of 3/4 it asks for 2 prompts; round 2 keeps none
    # (rate 3/6) and asks for 2 again; round 3 fills the batch
    assert sampler.calls == [(0, 4), (1, 2), (2, 2)]
    assert out.metrics(dynamic=True) == {
        "rollout/dropped_groups": 0.0,
        "sampling/tries": 3.0,
        "sampling/prompts": 8.0,
        "sampling/degenerate_groups": 3.0,
        "sampling/partial": 0.0,
    }
    assert len(out.sampled) == 8 * 4 and out.warning is None


def test_gives_up_after_its_limit_with_a_partial_batch_and_a_clear_message(caplog):
    sampler = FakeSampler([MIXED] + [ALL_WRONG] * 50)
    with caplog.at_level(logging.WARNING):
        out = collect_groups(sampler, prompts=4, group_size=4, cfg=DynamicSamplingConfig(enabled=True, max_tries=3))
    assert len(out.groups) == 1 and out.tries == 3 and len(sampler.calls) == 3
    assert "only 1 of 4 groups have differing rewards after 3 rollout rounds" in out.warning
    assert "algo.dynamic_sampling.max_tries (now 3)" in out.warning and out.warning in caplog.text
    assert out.metrics(dynamic=True)["sampling/partial"] == 1.0


def test_no_usable_group_at_all_skips_the_update():
    out = collect_groups(
        FakeSampler([ALL_RIGHT] * 20), prompts=2, group_size=4, cfg=DynamicSamplingConfig(enabled=True, max_tries=2)
    )
    assert out.groups == [] and "none: the update is skipped" in out.warning


def test_disabled_keeps_degenerate_groups_and_drops_failed_ones():
    failed = [1.0, math.nan, 0.0, 1.0]
    sampler = FakeSampler([ALL_RIGHT, failed, MIXED])
    out = collect_groups(sampler, prompts=3, group_size=4, cfg=DynamicSamplingConfig(enabled=False))
    assert len(out.groups) == 2 and sampler.calls == [(0, 3)] and out.warning is None
    assert out.metrics(dynamic=False) == {"rollout/dropped_groups": 1.0}
