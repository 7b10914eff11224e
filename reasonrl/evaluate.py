"""Evaluation on held-out examples: pass@1 (accuracy, with a Wilson 95% interval), pass@k, maj@k, mean reward
and its components, completion length, truncation, and a paired before/after comparison on the same problems.

    pass@k = mean over problems of 1 - C(n-c, k) / C(n, k)     (n samples, c correct; Chen et al. 2107.03374)
    maj@k  = mean over problems of [the most frequent final answer among the first k samples is right]
             (self-consistency, Wang et al. 2203.11171; unparsable answers do not vote; ties: earliest)

The same code runs inside training (every eval.every steps, logged as eval/pass@k, eval/maj@k, ...) and in
`reasonrl eval`. Per-problem counts and answers are kept, so both estimators can be recomputed from the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from reasonrl.config import FILE_TASKS
from reasonrl.engine import Completion, Engine, SamplingParams
from reasonrl.envs import Environment
from reasonrl.rewards.answers import canonical_answer, final_answer
from reasonrl.eval_progress import EvalProgress, reporting
from reasonrl.rewards.builtin import correct as correct_reward
from reasonrl.rollout import rollout
from reasonrl.types import Example, Trajectory


FULL_CREDIT = 1.0 - 1e-9


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well behaved near 0 and 1, unlike p +- 2se)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples, c of them correct: 1 - C(n-c, k) / C(n, k), the chance
    that k samples drawn without replacement include a correct one (Chen et al., arXiv 2107.03374).

    Product form, no large binomials: 1 when n - c < k, else 1 - prod_{j=n-c+1..n} (1 - k/j).
    """
    if k < 1 or n < k:
        raise ValueError(
            f"pass@k needs 1 <= k <= n samples (got n={n}, k={k}); draw at least k samples per "
            "problem (eval.samples) or lower k (eval.k)"
        )
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n correct samples (got n={n}, c={c})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / j for j in range(n - c + 1, n + 1))


def majority_vote(answers: Sequence[str | None], k: int) -> int | None:
    """Index of the winning answer among the first k: the most frequent canonical answer (canonical_answer);
    None answers (unparsable) do not vote. A tie goes to the answer that appears first. None when no answer."""
    if k < 1 or len(answers) < k:
        raise ValueError(
            f"maj@k needs 1 <= k <= n answers (got n={len(answers)}, k={k}); draw at least k "
            "samples per problem (eval.samples) or lower k (eval.k)"
        )
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers[:k]):
        key = canonical_answer(answer)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, i)
    if not counts:
        return None
    best = max(counts, key=lambda key: (counts[key], -first[key]))
    return first[best]


def maj_at_k(
    answers: Sequence[str | None], reference: str | None, k: int, correct: Sequence[bool] | None = None
) -> float:
    """1.0 when the majority answer among the first k (majority_vote) is right, else 0.0 (also when no sample
    gave an answer).

    Right: with `correct` (per-sample verdicts, e.g. full 'correct' reward), the verdict of the earliest sample
    that gave the winning answer, so answers are judged exactly as the reward judges them; without it, canonical
    equality with `reference`.
    """
    winner = majority_vote(answers, k)
    if winner is None:
        return 0.0
    if correct is not None:
        return float(bool(correct[winner]))
    if reference is None:
        raise ValueError("maj@k needs a reference answer or per-sample verdicts (correct=...)")
    return float(canonical_answer(answers[winner]) == canonical_answer(reference))


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
    """Per problem: id, reference answer, accuracy, `scored` (n) and `correct` (c) samples, each sample's
    'correct' score and final answer (`scores`, `answers`), and the first sample's completion."""
    pass_at_k: dict[str, float] = field(default_factory=dict)
    """k (as a string) -> pass@k over the problems with at least k scored samples."""
    maj_at_k: dict[str, float] = field(default_factory=dict)
    """k (as a string) -> maj@k over the problems the 'correct' reward scores."""
    answer_rate: float | None = None
    """Fraction of samples that gave a final answer (the rest cannot vote in maj@k)."""
    greedy: dict[str, Any] | None = None
    """The same problems decoded greedily, one sample each (an EvalResult as a dict), when eval.greedy is on
    and the samples above were drawn at a temperature above 0."""

    def metrics(self, prefix: str) -> dict[str, float]:
        out = {
            f"{prefix}/mean_reward": self.mean_reward,
            f"{prefix}/mean_length": self.mean_length,
            f"{prefix}/truncation_rate": self.truncation_rate,
        }
        if self.accuracy is not None:
            out[f"{prefix}/accuracy"] = self.accuracy
        out.update({f"{prefix}/pass@{k}": v for k, v in self.pass_at_k.items()})
        out.update({f"{prefix}/maj@{k}": v for k, v in self.maj_at_k.items()})
        out.update({f"{prefix}/reward/{k}": v for k, v in self.reward_parts.items()})
        if self.greedy is not None:
            greedy = EvalResult(**self.greedy)
            if greedy.accuracy is not None:
                out[f"{prefix}/greedy/accuracy"] = greedy.accuracy
            out |= {
                f"{prefix}/greedy/mean_reward": greedy.mean_reward,
                f"{prefix}/greedy/mean_length": greedy.mean_length,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def problem_record(example: Example, group: list[Trajectory], lenient: bool = True) -> dict[str, Any]:
    """One problem's samples: n (`scored`: samples the 'correct' reward scored), c (`correct`: full credit),
    each sample's score and final answer. Partial credit (reasoning-gym's 1/3 for "= 9 ." against "9") counts
    in the mean reward, not here."""
    scores = [t.reward_parts.get("correct") for t in group]
    verdicts = [float(v >= FULL_CREDIT) for v in scores if v is not None]
    return {
        "id": example.id,
        "answer": example.answer,
        "accuracy": sum(verdicts) / len(verdicts) if verdicts else None,
        "scored": len(verdicts),
        "correct": int(sum(verdicts)),
        "scores": scores,
        "answers": [final_answer(t.completion, lenient) for t in group],
        "completion": group[0].completion,
    }


def estimates(per_problem: list[dict[str, Any]], ks: Sequence[int]) -> tuple[dict[str, float], dict[str, float]]:
    """pass@k and maj@k for each k from problem_record rows (what EvalResult.per_problem holds in the JSON)."""
    pass_at, maj_at = {}, {}
    for k in ks:
        rows = [p for p in per_problem if p["scored"] >= k]
        if rows:
            pass_at[str(k)] = sum(pass_at_k(p["scored"], p["correct"], k) for p in rows) / len(rows)
        rows = [p for p in per_problem if p["scored"] and len(p["answers"]) >= k]
        if rows:
            maj_at[str(k)] = sum(
                maj_at_k(p["answers"], p["answer"], k, [s is not None and s >= FULL_CREDIT for s in p["scores"]])
                for p in rows
            ) / len(rows)
    return pass_at, maj_at


def evaluate(
    env: Environment,
    engine: Engine,
    tokenizer: Any,
    examples: list[Example],
    params: SamplingParams,
    samples: int,
    seed: int,
    task: str = "",
    ks: Sequence[int] | None = None,
    lenient: bool = True,
    report: EvalProgress | None = None,
) -> EvalResult:
    """Sample `samples` completions per example and score them. ks: the k of pass@k and maj@k (None: 1 and
    samples); k > samples is skipped. lenient: how final answers are read (the 'correct' reward's option).
    report: sampling progress (and accuracy so far on single-turn tasks), for an engine that samples in chunks."""
    if report is not None and env.max_turns == 1:

        def score(i: int, completion: Completion) -> bool | None:
            text = tokenizer.decode(completion.token_ids, skip_special_tokens=True)
            verdict = correct_reward(text, examples[i], lenient)
            return verdict >= FULL_CREDIT if isinstance(verdict, int | float) else None

        report.scorer = score
    with reporting(engine, report):
        trajectories = rollout(env, engine, tokenizer, examples, n=samples, params=params, seed=seed)
    parts: dict[str, list[float]] = {}
    for t in trajectories:
        for name, value in t.reward_parts.items():
            if value is not None:
                parts.setdefault(name, []).append(value)
    correct = [float(v >= FULL_CREDIT) for v in parts.get("correct", [])]
    per_problem = [
        problem_record(example, trajectories[g * samples : (g + 1) * samples], lenient)
        for g, example in enumerate(examples)
    ]
    pass_at, maj_at = estimates(per_problem, sorted({k for k in (ks or (1, samples)) if k <= samples}))
    n = len(trajectories)
    rewards = [t.reward for t in trajectories if not math.isnan(t.reward)]
    answered = sum(canonical_answer(a) is not None for p in per_problem for a in p["answers"])
    return EvalResult(
        task=task,
        problems=len(examples),
        samples_per_problem=samples,
        accuracy=sum(correct) / len(correct) if correct else None,
        accuracy_ci=wilson_interval(sum(correct), len(correct)) if correct else None,
        mean_reward=sum(rewards) / max(len(rewards), 1),
        reward_parts={k: sum(v) / len(v) for k, v in parts.items()},
        mean_length=sum(t.completion_tokens for t in trajectories) / max(n, 1),
        truncation_rate=sum(t.truncated for t in trajectories) / max(n, 1),
        per_problem=per_problem,
        pass_at_k=pass_at,
        maj_at_k=maj_at,
        answer_rate=answered / max(n, 1),
    )


def evaluate_run(
    env: Environment,
    engine: Engine,
    tokenizer: Any,
    examples: list[Example],
    cfg: Any,
    task: str | None = None,
    report: EvalProgress | None = None,
) -> EvalResult:
    """evaluate() with a RunConfig's eval.* settings (the same in training and in `reasonrl eval`)."""
    params = SamplingParams(
        cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens, cfg.eval.temperature, cfg.sampling.top_p
    )
    lenient = bool(cfg.rewards.options.get("correct", {}).get("lenient", True))
    name = task or cfg.task.name
    result = evaluate(
        env, engine, tokenizer, examples, params, cfg.eval.samples, cfg.seed + 12345, name, cfg.eval.k, lenient, report
    )
    if cfg.eval.greedy and cfg.eval.temperature > 0:
        if report is not None:
            report.restart(f"{report.label} (greedy)")
        greedy = replace(params, temperature=0.0, top_p=1.0)
        best = evaluate(env, engine, tokenizer, examples, greedy, 1, cfg.seed + 12345, name, [1], lenient, report)
        result.greedy = best.to_dict()
    return result


def load_for_eval(cfg: Any) -> tuple[Any, Any, Engine, Environment]:
    """What an evaluation outside training needs: the policy (with cfg.model.adapter when set), its tokenizer, an
    engine (cfg.engine) sampling it, and the environment. The caller closes the environment."""
    from reasonrl.engine import ENGINES
    from reasonrl.envs import make_environment
    from reasonrl.model import load_policy

    policy, tokenizer = load_policy(cfg.model, cfg.lora)
    engine = ENGINES.get(cfg.engine.name)(cfg.model, cfg.lora, cfg.engine, tokenizer, shared=policy)
    return policy, tokenizer, engine, make_environment(cfg)


def eval_task_names(cfg: Any, names: Sequence[str] | None = None) -> list[str]:
    """The tasks to evaluate: `names` when given (e.g. --tasks a,b), else the run's task then eval.tasks;
    duplicates dropped, order kept."""
    return list(dict.fromkeys(names if names is not None else [cfg.task.name, *cfg.eval.tasks]))


def eval_sets(cfg: Any, names: Sequence[str] | None = None) -> list[tuple[str, list[Example]]]:
    """(task name, held-out examples) for each task of eval_task_names. The run's own task keeps every task.*
    setting; another task uses the run's prompt settings (instruction, system prompt, few-shot, seed, sizes)
    with its dataset's default options. Each gets eval.size (or task.eval_size) problems."""
    from reasonrl.tasks import load_task

    out = []
    for name in eval_task_names(cfg, names):
        task_cfg = cfg.task if name == cfg.task.name else replace(cfg.task, name=name, options={}, path=None)
        if task_cfg.name.partition(":")[0] in FILE_TASKS and not task_cfg.path:
            raise ValueError(
                f"eval task {name!r} needs a data file; only the run's own task (task.name with "
                "task.path) can be a file task: evaluate it with task.name=... task.path=..."
            )
        out.append((name, load_task(task_cfg).eval[: cfg.eval.size or cfg.task.eval_size]))
    return out


def extra_task_metrics(
    env: Environment, engine: Engine, tokenizer: Any, sets: list[tuple[str, list[Example]]], cfg: Any
) -> dict[str, float]:
    """Metrics of the eval.tasks besides the run's task, under eval/<task>/... (training logs them)."""
    out: dict[str, float] = {}
    for name, examples in sets:
        out |= evaluate_run(env, engine, tokenizer, examples, cfg, name).metrics(f"eval/{name}")
    return out


def format_result(result: EvalResult, note: str = "") -> str:
    """One task's table, as `reasonrl eval` prints it."""
    n = result.problems * result.samples_per_problem
    lines = [f"{result.task}: {result.problems} problems x {result.samples_per_problem} samples{note}"]
    row = "  {:<20}{:>8}  {}".format
    if result.accuracy is not None:
        ci = result.accuracy_ci or (0.0, 1.0)
        lines.append(
            row(
                "pass@1 (accuracy)",
                f"{result.accuracy:.3f}",
                f"95% CI [{ci[0]:.3f}, {ci[1]:.3f}] (Wilson, {n} samples)",
            )
        )
    else:
        lines.append(row("pass@1 (accuracy)", "-", "no 'correct' reward configured"))
    if result.greedy is not None and (greedy := EvalResult(**result.greedy)).accuracy is not None:
        lo, hi = greedy.accuracy_ci or (0.0, 1.0)
        what = f"95% CI [{lo:.3f}, {hi:.3f}] (one greedy completion per problem, length {greedy.mean_length:.1f})"
        lines.append(row("greedy accuracy", f"{greedy.accuracy:.3f}", what))
    for k, value in result.pass_at_k.items():
        if k != "1":
            lines.append(row(f"pass@{k}", f"{value:.3f}", "unbiased estimator"))
    for k, value in result.maj_at_k.items():
        lines.append(
            row(
                f"maj@{k}",
                f"{value:.3f}",
                f"majority vote of {k} final answers" if k != "1" else "the first sample's final answer",
            )
        )
    if result.answer_rate is not None:
        lines.append(row("answered", f"{result.answer_rate:.2f}", "samples with a final answer (votes)"))
    lines.append(row("mean reward", f"{result.mean_reward:.3f}", ""))
    lines += [row(f"  {k}", f"{v:.3f}", "reward part") for k, v in result.reward_parts.items()]
    lines.append(row("mean length", f"{result.mean_length:.1f}", "tokens"))
    lines.append(row("truncated", f"{result.truncation_rate:.2f}", "hit max_new_tokens"))
    return "\n".join(line.rstrip() for line in lines)


def format_overview(results: list[EvalResult]) -> str:
    """One row per task (pass@k, maj@k, reward), printed after the per-task tables when there are several."""
    ks = list(dict.fromkeys(k for r in results for k in r.pass_at_k))
    majs = list(dict.fromkeys(k for r in results for k in r.maj_at_k))
    width = max(len(r.task) for r in results) + 2
    head = "".join(f"{'pass@' + k:>9}" for k in ks) + "".join(f"{'maj@' + k:>9}" for k in majs)
    lines = [f"{'task':<{width}}{head}{'reward':>9}{'length':>9}"]
    for r in results:
        cells = [r.pass_at_k.get(k) for k in ks] + [r.maj_at_k.get(k) for k in majs]
        lines.append(
            f"{r.task:<{width}}"
            + "".join(f"{'-' if v is None else f'{v:.3f}':>9}" for v in cells)
            + f"{r.mean_reward:>9.3f}{r.mean_length:>9.1f}"
        )
    return "\n".join(lines)


def paired_comparison(before: EvalResult, after: EvalResult) -> dict[str, float]:
    """Per-problem accuracy change on the same problems: mean difference with a 95% interval (normal
    approximation over problems), and how many problems got better / worse."""
    pairs = [
        (b["accuracy"], a["accuracy"])
        for b, a in zip(before.per_problem, after.per_problem)
        if b["id"] == a["id"] and b["accuracy"] is not None and a["accuracy"] is not None
    ]
    if not pairs:
        return {}
    diffs = [a - b for b, a in pairs]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1)
    half = 1.96 * math.sqrt(var / len(diffs))
    return {
        "problems": len(diffs),
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "better": sum(d > 0 for d in diffs),
        "worse": sum(d < 0 for d in diffs),
    }
