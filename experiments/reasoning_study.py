"""Reasoning, not guessing: do rewards for verified steps beat an outcome-only reward on multi-step problems?

    .venv/bin/python experiments/reasoning_study.py                    # every family x arm x seed, then the report
    .venv/bin/python experiments/reasoning_study.py --plan             # list the runs and what each one changes
    .venv/bin/python experiments/reasoning_study.py --analyse-only     # the report from the runs on disk
    .venv/bin/python experiments/reasoning_study.py --families arith3 --arms outcome,steps --seeds 3 --steps 40

Every run is the quickstart recipe (bundled SmolLM2-135M-Instruct, GRPO + LoRA, 4 prompts x 8 samples) on a
family's task, with an arm's rewards or algorithm, for one training seed; the task's seed is fixed, so every
run of a family is scored on the same held-out problems, never trained on. Arms:

    outcome      correct + format: the baseline
    steps        + steps (the share of the written equalities that hold, checked with sympy)
    first_error  + steps with credit=first_error (true steps before the first false one)
    process      grpo_process advantages: each claim's step reward at its own tokens (DeepSeekMath 4.1.3)
    gate         the answer counts only when every equality written before it holds (gated_correct below)
    sft_rl       a short SFT on the task's worked solutions (reasonrl/tasks/worked.py), then the outcome arm
    sft_steps    the same SFT, then the steps arm (DeepSeekMath's order with a reward for the working)
    sft_steps_answered   sft_steps with the steps credit gated on the format (an "Answer:" last line)

Finished runs are reused and unfinished ones resumed, so the command can be rerun after an interruption. The
SFT arms of a seed share one SFT run, the base model is evaluated once per family, and an SFT arm's RL run starts
from its SFT run's final evaluation. Measured for each run, from its evaluations at the start and the end:
held-out accuracy sampled (4 samples at temperature 1) and greedy, pass@4, mean completion length, the share of
greedy completions with a verified step and the share of their steps that are false; from the saved rollouts,
the claims per completion and the share of trivial ones (see step_stats) at the start and the end of training.
The report (docs/experiments/reasoning.md, .json, .svg): per arm the mean over seeds and the changes against the
base model and the outcome arm, paired over problems (each averaged over seeds), with 95% t intervals."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.reasoning_report import MARK, markdown, svg  # noqa: E402
from reasonrl.stats import mean_interval  # noqa: E402

RECIPE = ROOT / "recipes" / "quickstart.yaml"
ARITH3 = [
    "task.name=reasoning_gym:basic_arithmetic",
    "task.train_size=400",
    "task.eval_size=100",
    "sampling.max_new_tokens=96",
    "task.options={min_terms: 3, max_terms: 3, min_digits: 1, max_digits: 1, operators: ['+', '-'], "
    "allow_parentheses: false, allow_negation: false}",
]
FAMILIES: dict[str, dict[str, Any]] = {
    "add3": {
        "about": "three one-digit numbers added, two worked examples in the prompt (the quickstart)",
        "overrides": [],
    },
    "arith3": {"about": "three one-digit numbers added and subtracted, results may be negative", "overrides": ARITH3},
    "arith3_0shot": {
        "about": "arith3 with no worked example in the prompt, only the instruction to end with the answer",
        "overrides": [*ARITH3, "task.few_shot=0"],
    },
    "legs": {
        "about": "legs of two or three kinds of animals, a product each and a sum (leg_counting)",
        "overrides": [
            "task.name=reasoning_gym:leg_counting",
            "task.options={min_animals: 2, max_animals: 3, max_instances: 6}",
            "task.train_size=400",
            "task.eval_size=100",
            "sampling.max_new_tokens=128",
        ],
    },
}
OUTCOME = "rewards.components={correct: 1.0, format: 0.1}"
STEPS = "rewards.components={correct: 1.0, format: 0.1, steps: 0.5}"
# `correct` at weight 0 is scored, not rewarded: evaluations take their accuracy from it
GATE = f"rewards.components={{'{Path(__file__).resolve()}:gated_correct': 1.0, correct: 0.0, format: 0.1}}"
ARMS: dict[str, dict[str, Any]] = {
    "outcome": {"about": "correct + format (baseline)", "overrides": [OUTCOME]},
    "steps": {"about": "+ steps 0.5 (share of true equalities)", "overrides": [STEPS]},
    "first_error": {
        "about": "+ steps 0.5, credit first_error",
        "overrides": [STEPS, "rewards.options={steps: {credit: first_error}}"],
    },
    "process": {"about": "steps as step rewards, grpo_process", "overrides": [STEPS, "algo.advantage=grpo_process"]},
    "gate": {"about": "answer counts only if every step holds", "overrides": [GATE]},
    "sft_rl": {"about": "SFT on worked solutions, then outcome RL", "overrides": [OUTCOME], "sft_steps": 10},
    "sft_steps": {"about": "the same SFT, then RL with + steps 0.5", "overrides": [STEPS], "sft_steps": 10},
    "sft_steps_answered": {
        "about": "the same SFT, then + steps 0.5 paid only when the reply ends with an answer line",
        "overrides": [STEPS, "rewards.gates={steps: format}"],
        "sft_steps": 10,
    },
}
COMMON = ["eval.samples=4", "eval.temperature=1.0", "eval.k=[1, 4]", "log_rollouts_every=5", "save_every=1000"]


def gated_correct(completion: str, example: Any, **options: Any) -> float | None:
    """The 'correct' reward, kept only when every equality written before the answer holds (and there is one)."""
    from reasonrl.rewards.builtin import correct
    from reasonrl.rewards.steps import verdicts

    score = correct(completion, example)
    if not score:
        return score
    checked = verdicts(completion)
    return score if checked and all(v.holds for v in checked) else 0.0


def run_name(family: str, arm: str, seed: int) -> str:
    return f"{family}-{arm}-seed{seed}"


def config(family: str, arm: str, seed: int, args: argparse.Namespace, extra: list[str] = ()) -> Any:
    from reasonrl.config import load_config

    overrides = [*FAMILIES[family]["overrides"], *ARMS[arm]["overrides"], *COMMON, *extra]
    run = [f"seed={seed}", f"steps={args.steps}", f"output_dir={args.runs}", f"name={run_name(family, arm, seed)}"]
    return load_config(RECIPE, overrides + run + args.override)


def run_one(family: str, arm: str, seed: int, args: argparse.Namespace) -> Path:
    """Train one run (SFT first for sft_rl); reuse it when finished, resume it when interrupted."""
    from reasonrl.train import train

    extra: list[str] = []
    if sft_steps := ARMS[arm].get("sft_steps"):
        from reasonrl.sft import sft

        # one SFT run per family and seed, configured the same whichever SFT arm starts it first
        sft_cfg = config(family, "sft_rl", seed, args, [f"sft.steps={sft_steps}", "eval.before=skip"])
        sft_dir = sft_run(args.runs, family, seed)
        sft_cfg = replace(sft_cfg, name=sft_dir.name)
        if not (sft_dir / "summary.json").is_file():
            sft(sft_cfg, resume=(sft_dir / "config.yaml").is_file(), quiet=args.quiet)
        extra = [f"model.adapter={sft_dir / 'adapter'}"]
    if sft_steps or seed != args.first_seed:  # the start was evaluated: the base model once, the SFT run's end
        extra.append("eval.before=skip")
    cfg = config(family, arm, seed, args, extra)
    run_dir = Path(cfg.output_dir) / cfg.name
    if not (run_dir / "summary.json").is_file():
        train(cfg, resume=(run_dir / "config.yaml").is_file(), quiet=args.quiet)
    return run_dir


def step_stats(completions: list[str], questions: list[str] | None = None) -> dict[str, float]:
    """Share of completions with at least one verified step, share of false steps among all counted steps,
    counted steps per completion, and (with the questions) the share of true steps none of whose operands is a
    number of the problem or an earlier step's result (padding such as `1 + 1 = 2`; in 3 + 4 + 4, `3 + 4 = 7`
    then `7 + 4 = 11` is not)."""
    from reasonrl.rewards.steps import verdicts

    with_step = false = counted = trivial = true = 0
    for i, text in enumerate(completions):
        checked = verdicts(text)
        with_step += bool(checked)
        counted += len(checked)
        false += sum(not v.holds for v in checked)
        true += sum(v.holds for v in checked)
        if questions is None:
            continue
        known = set(re.findall(r"\d+", questions[i]))
        for v in checked:  # operands only: a result may equal a known number by chance
            trivial += v.holds and not set(re.findall(r"\d+", v.claim.left)) & known
            known |= set(re.findall(r"\d+", v.claim.right))
    n = max(len(completions), 1)
    out = {
        "with_step": with_step / n,
        "false_steps": false / counted if counted else 0.0,
        "steps_per_completion": counted / n,
    }
    if questions is not None:
        out["trivial_steps"] = trivial / true if true else 0.0
    return out


def final_evals(run_dir: Path) -> dict[str, Any]:
    """The evaluations a run kept (step -> EvalResult dict with per-problem rows), from its last checkpoint."""
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*"))
    if not checkpoints:
        raise SystemExit(f"{run_dir}: no checkpoint; is the run finished?")
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text())["evals"]


def rollout_stats(run_dir: Path, first: bool) -> dict[str, float]:
    """Steps in the completions of the first or the last saved rollout file."""
    files = sorted((run_dir / "rollouts").glob("step_*.jsonl"))
    if not files:
        return {}
    rows = [json.loads(line) for line in (files[0] if first else files[-1]).read_text().splitlines()]
    return step_stats([r["completion"] for r in rows], [r["prompt"] for r in rows])


def sft_run(runs: str | Path, family: str, seed: int) -> Path:
    """The SFT run of a family and seed, shared by the SFT arms (the SFT does not depend on the arm's rewards)."""
    return Path(runs) / f"{run_name(family, 'sft_rl', seed)}-sft"


def measure(run_dir: Path, sft_dir: Path | None = None) -> dict[str, Any]:
    """One run's numbers: before and after, sampled and greedy, with per-problem rows for the pairing."""
    evals = final_evals(run_dir)
    last = max(evals, key=int)
    if "0" not in evals and sft_dir is not None:
        evals["0"] = max(final_evals(sft_dir).items(), key=lambda kv: int(kv[0]))[1]  # the SFT run's end: RL's start
    out: dict[str, Any] = {"run": run_dir.name, "steps": int(last)}
    for label, key in (("before", "0"), ("after", last)):
        if key not in evals:
            continue
        r = evals[key]
        greedy = r.get("greedy") or {}
        out[label] = {
            "sampled": r["accuracy"],
            "greedy": greedy.get("accuracy"),
            "pass@4": r["pass_at_k"].get("4"),
            "length": r["mean_length"],
            "greedy_length": greedy.get("mean_length"),
            **step_stats([p["completion"] for p in greedy.get("per_problem", [])]),
            "problems": {
                p["id"]: [p["accuracy"], g["accuracy"]]
                for p, g in zip(r["per_problem"], greedy.get("per_problem", []), strict=False)
            },
        }
    out["training"] = {"start": rollout_stats(run_dir, True), "end": rollout_stats(run_dir, False)}
    return out


# ------------------------------------------------------------------------------------------------- analysis


def paired_change(arm: list[dict], base: list[dict], which: int) -> dict[str, float] | None:
    """Change of the arm against the baseline on the same problems: each problem's accuracy (which: 0 sampled,
    1 greedy) averaged over the seeds of each side, then the mean difference with a 95% t interval."""

    def by_problem(runs: list[dict]) -> dict[str, float]:
        sums: dict[str, list[float]] = {}
        for run in runs:
            for pid, values in run["after"]["problems"].items():
                sums.setdefault(pid, []).append(values[which])
        return {pid: sum(v) / len(v) for pid, v in sums.items()}

    a, b = by_problem(arm), by_problem(base)
    diffs = [a[p] - b[p] for p in a if p in b]
    if len(diffs) < 2:
        return None
    mean, low, high = mean_interval(diffs)
    return {"mean": mean, "low": low, "high": high, "problems": len(diffs)}


def summarise(results: dict[str, dict[str, list[dict]]]) -> dict[str, Any]:
    """family -> arm -> means over seeds (with t intervals where there are several) and the paired changes."""
    out: dict[str, Any] = {}
    for family, arms in results.items():
        out[family] = {}
        plain = [r for a, runs in arms.items() if not ARMS[a].get("sft_steps") for r in runs if "before" in r]
        base = plain[0]["before"] if plain else None  # the base model: where an arm without SFT starts
        for arm, runs in arms.items():
            row: dict[str, Any] = {"seeds": len(runs), "steps": sorted({r["steps"] for r in runs})}
            row["sft"] = bool(ARMS[arm].get("sft_steps"))  # starts from its SFT run, not from the base model
            for key in ("sampled", "greedy", "pass@4", "length", "with_step", "false_steps"):
                values = [r["after"][key] for r in runs if r["after"].get(key) is not None]
                if values:
                    row[key] = mean_interval(values) if len(values) > 1 else (values[0], math.nan, math.nan)
            starts = [r["before"] for r in runs if "before" in r]  # the base model once, or each seed's SFT run
            row["before"] = {
                k: sum(v) / len(v) if (v := [s[k] for s in starts if s.get(k) is not None]) else None
                for k in ("sampled", "greedy", "pass@4", "length")
            }
            row["vs_base"] = paired_change(runs, [{"after": base}], 1) if base else None  # greedy, base model
            if row["sft"]:  # what the RL after the SFT changed: against the SFT runs' final evaluations
                sft_ends = [{"after": start} for start in starts]
                row["vs_start"] = {k: paired_change(runs, sft_ends, i) for i, k in enumerate(("sampled", "greedy"))}
            if "outcome" in arms and arm != "outcome":
                row["vs_outcome"] = {
                    "sampled": paired_change(runs, arms["outcome"], 0),
                    "greedy": paired_change(runs, arms["outcome"], 1),
                }
            row["training"] = {
                side: {
                    k: sum(r["training"][side].get(k, 0.0) for r in runs) / len(runs)
                    for k in ("steps_per_completion", "trivial_steps")
                }
                for side in ("start", "end")
            }
            out[family][arm] = row
    return out


def analyse(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, dict[str, list[dict]]] = {}
    for family in args.families:
        for arm in args.arms:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                run_dir = Path(args.runs) / run_name(family, arm, seed)
                if (run_dir / "summary.json").is_file():
                    results.setdefault(family, {}).setdefault(arm, []).append(
                        measure(run_dir, sft_run(args.runs, family, seed) if ARMS[arm].get("sft_steps") else None)
                    )
    summary = summarise(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.is_file() else ""
    text = markdown(summary, {name: spec["about"] for name, spec in {**FAMILIES, **ARMS}.items()})
    out.write_text(f"{old.split(MARK)[0]}{MARK}\n\n" + text.partition("\n\n")[2] if MARK in old else text)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    out.with_suffix(".svg").write_text(svg(summary))
    print(text)
    print(f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.svg')}")
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, of {', '.join(FAMILIES)}")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--runs", default=str(ROOT / "runs" / "reasoning_study"))
    p.add_argument("--out", default=str(ROOT / "docs" / "experiments" / "reasoning.md"))
    p.add_argument("--plan", action="store_true", help="list the runs and stop")
    p.add_argument("--analyse-only", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("override", nargs="*", help="dotted overrides for every run (e.g. threads=1)")
    args = p.parse_args(argv)
    args.families, args.arms = args.families.split(","), args.arms.split(",")
    for name, values, known in (("family", args.families, FAMILIES), ("arm", args.arms, ARMS)):
        for value in (v for v in values if v not in known):
            raise SystemExit(f"error: unknown {name} {value!r}; one of {', '.join(known)}")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    runs = [(f, a, s) for f in args.families for a in args.arms for s in seeds]
    if args.plan:
        for f, a, s in runs:
            print(f"{run_name(f, a, s):32} {FAMILIES[f]['about'][:40]:42} {ARMS[a]['about']}")
        print(f"{len(runs)} runs of {args.steps} steps")
        return
    if not args.analyse_only:
        for i, (f, a, s) in enumerate(runs, 1):
            print(f"[{i}/{len(runs)}] {run_name(f, a, s)}", flush=True)
            run_one(f, a, s, args)
    analyse(args)


if __name__ == "__main__":
    main()
