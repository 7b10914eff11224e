"""Evaluation on held-out examples: accuracy (with a Wilson 95% interval), mean reward and its components,
completion length, format and truncation rates, and a paired before/after comparison on the same problems.

The same function runs inside training (eval.every) and in `reasonrl eval`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonrl.engine import Engine, SamplingParams
from reasonrl.envs import Environment
from reasonrl.rollout import rollout
from reasonrl.types import Example


FULL_CREDIT = 1.0 - 1e-9


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well behaved near 0 and 1, unlike p +- 2se)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    task: str
    problems: int
    samples_per_problem: int
    accuracy: float | None
    """Fraction of samples with full 'correct' reward (None when no 'correct' component is configured)."""
    accuracy_ci: tuple[float, float] | None
    mean_reward: float
    reward_parts: dict[str, float]
    mean_length: float
    truncation_rate: float
    per_problem: list[dict[str, Any]] = field(default_factory=list)
    """id, accuracy and the first sample's completion for each problem (for paired comparisons)."""

    def metrics(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/mean_reward": self.mean_reward, f"{prefix}/mean_length": self.mean_length,
               f"{prefix}/truncation_rate": self.truncation_rate}
        if self.accuracy is not None:
            out[f"{prefix}/accuracy"] = self.accuracy
        out.update({f"{prefix}/reward/{k}": v for k, v in self.reward_parts.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(env: Environment, engine: Engine, tokenizer: Any, examples: list[Example], params: SamplingParams,
             samples: int, seed: int, task: str = "") -> EvalResult:
    trajectories = rollout(env, engine, tokenizer, examples, n=samples, params=params, seed=seed)
    parts: dict[str, list[float]] = {}
    for t in trajectories:
        for name, value in t.reward_parts.items():
            if value is not None:
                parts.setdefault(name, []).append(value)
    # A sample is correct when the 'correct' reward is full (some scorers, e.g. reasoning-gym's, give partial
    # credit such as 1/3 for "= 9 ." against "9"; that counts in the mean reward, not in accuracy).
    correct = [float(v >= FULL_CREDIT) for v in parts.get("correct", [])]
    per_problem = []
    for g, example in enumerate(examples):
        group = trajectories[g * samples:(g + 1) * samples]
        values = [t.reward_parts.get("correct") for t in group]
        scored = [float(v >= FULL_CREDIT) for v in values if v is not None]
        per_problem.append({"id": example.id, "answer": example.answer,
                            "accuracy": sum(scored) / len(scored) if scored else None,
                            "completion": group[0].completion})
    n = len(trajectories)
    rewards = [t.reward for t in trajectories if not math.isnan(t.reward)]
    return EvalResult(
        task=task, problems=len(examples), samples_per_problem=samples,
        accuracy=sum(correct) / len(correct) if correct else None,
        accuracy_ci=wilson_interval(sum(correct), len(correct)) if correct else None,
        mean_reward=sum(rewards) / max(len(rewards), 1),
        reward_parts={k: sum(v) / len(v) for k, v in parts.items()},
        mean_length=sum(t.completion_tokens for t in trajectories) / max(n, 1),
        truncation_rate=sum(t.truncated for t in trajectories) / max(n, 1),
        per_problem=per_problem)


def paired_comparison(before: EvalResult, after: EvalResult) -> dict[str, float]:
    """Per-problem accuracy change on the same problems: mean difference with a 95% interval (normal
    approximation over problems), and how many problems got better / worse."""
    pairs = [(b["accuracy"], a["accuracy"]) for b, a in zip(before.per_problem, after.per_problem)
             if b["id"] == a["id"] and b["accuracy"] is not None and a["accuracy"] is not None]
    if not pairs:
        return {}
    diffs = [a - b for b, a in pairs]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1)
    half = 1.96 * math.sqrt(var / len(diffs))
    return {"problems": len(diffs), "mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half,
            "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs)}
