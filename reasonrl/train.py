"""The training loop, top to bottom: sample prompts, roll out G completions each, score, compute advantages,
update the policy, log, evaluate, checkpoint.

    reasonrl train recipes/quickstart.yaml algo.kl.coef=0.01
    reasonrl train --resume runs/quickstart

The algorithm is the config's choice of registered functions (docs/algorithms.md): the advantage estimator
(`algo.advantage`, default GRPO: A_i = (r_i - mean(r_group)) / std(r_group)), the policy loss
(`algo.loss.name`, default PPO-clip), the KL to the reference (the LoRA model with its adapter disabled) and
DAPO's shaping and dynamic sampling. The loop never branches on a name; an estimator that needs values (gae)
gets a critic, trained after the policy in the same step.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import time
from functools import partial
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig, load_config, save_config
from reasonrl.evaluate import EvalResult, eval_sets, paired_comparison
from reasonrl.forgetting import format_forget, make_monitor
from reasonrl.report import write_report_safely
from reasonrl.placement import AheadSampler, make_roles
from reasonrl.roles import RolloutWorker
from reasonrl.early_stop import Watcher
from reasonrl.plan import StepPhases, memory_check
from reasonrl.run import STATE_FILE, Run, RunStopped, catch_stop_signals, read_state, write_state
from reasonrl.sync_check import SyncCheck
from reasonrl.tasks import load_task
from reasonrl.types import Example, Trajectory, collate
from reasonrl.utils.files import Busy, atomic_write_text, file_lock, write_dir_atomically
from reasonrl.utils.host import configure_host
from reasonrl.utils.log import Progress


def rollout_stats(trajectories: list[Trajectory], group_size: int) -> dict[str, float]:
    rewards = [t.reward for t in trajectories if not math.isnan(t.reward)]
    stats = {
        "rollout/reward": sum(rewards) / max(len(rewards), 1),
        "rollout/completion_tokens": sum(t.completion_tokens for t in trajectories) / len(trajectories),
        "rollout/truncation_rate": sum(t.truncated for t in trajectories) / len(trajectories),
        "rollout/reward_errors": float(sum(bool(t.info.get("errors")) for t in trajectories)),
    }
    if any(t.num_turns > 1 for t in trajectories):
        n = len(trajectories)
        stats |= {
            "rollout/turns": sum(t.num_turns for t in trajectories) / n,
            "rollout/turn_limit_rate": sum(bool(t.info.get("turn_limit")) for t in trajectories) / n,
            "rollout/context_limit_rate": sum(bool(t.info.get("context_limit")) for t in trajectories) / n,
        }
    groups = [rewards[i : i + group_size] for i in range(0, len(rewards), group_size)]
    stats["rollout/degenerate_groups"] = sum(max(g) == min(g) for g in groups if g) / max(len(groups), 1)
    names = {name for t in trajectories for name in t.reward_parts}
    for name in sorted(names):
        values = [v for t in trajectories if (v := t.reward_parts.get(name)) is not None]
        if values:
            stats[f"reward/{name}"] = sum(values) / len(values)
    return stats


def write_rollouts(path: Path, step: int, trajectories: list[Trajectory], tokenizer: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for t in trajectories:
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "group": t.group,
                        "id": t.example.id,
                        "prompt": t.example.prompt[-1]["content"],
                        "answer": t.example.answer,
                        "completion": t.completion,
                        "reward": t.reward,
                        "reward_parts": t.reward_parts,
                        "completion_tokens": t.completion_tokens,
                        "truncated": t.truncated,
                        "turns": t.num_turns,
                        "errors": t.info.get("errors", []),
                    }
                )
                + "\n"
            )


@contextlib.contextmanager
def claim_run_dir(cfg: RunConfig, resume: bool, overwrite: bool, command: str = "train") -> Iterator[Path]:
    """runs/<name>, held by this process while the block runs: a second run pointed at it is refused at once,
    naming this one's pid (flock on runs/.<name>.lock, which the kernel releases when the holder dies, however it
    dies). An existing directory is refused without --resume or --overwrite. Nothing is left behind by a run
    that is refused or fails before it starts: the lock file goes on release, and so does a runs/ this
    created while it stays empty."""
    run_dir = Path(cfg.output_dir) / cfg.name
    made_parent = not run_dir.parent.exists()
    with contextlib.ExitStack() as stack:
        if made_parent:  # runs last, after the lock file is gone
            stack.callback(_remove_if_empty, run_dir.parent)
        try:
            stack.enter_context(file_lock(run_dir.parent / f".{run_dir.name}.lock", wait=False, remove=True))
        except Busy as e:
            raise ValueError(
                f"run directory {run_dir} is in use by process {e.pid or '?'} (another reasonrl run); "
                f"wait for it to end or stop it, or pick another name (name=...)"
            ) from None
        if run_dir.exists() and not resume and not overwrite:
            resume_hint = "" if command == "pipeline" else f"continue it with `reasonrl {command} --resume {run_dir}`, "
            raise ValueError(
                f"run directory {run_dir} already exists; {resume_hint}pick another name (name=...), "
                "or pass --overwrite"
            )
        stack.enter_context(catch_stop_signals())
        try:
            yield run_dir
        except RunStopped:
            raise
        except BaseException as e:  # recorded, then raised: a failed run says so in its state.json
            record = read_state(run_dir) if (run_dir / STATE_FILE).is_file() else {}
            if record.get("state") == "running":
                error = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
                kept = {k: v for k, v in record.items() if k in ("command", "step", "steps")}
                with contextlib.suppress(OSError):  # a full disk must not hide the error itself
                    write_state(run_dir, "failed", error=error[:2000], **kept)
            raise


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def prepare_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        save_config(cfg, run_dir / "config.yaml")


def train(
    cfg: RunConfig, resume: bool = False, overwrite: bool = False, quiet: bool = False, watchers: Sequence[Watcher] = ()
) -> Path:
    """Train with cfg; returns the run directory. resume=True continues runs/<name> from its last checkpoint.
    watchers: called after each evaluation; one that returns a reason stops the run there (a sweep's pruner)."""
    configure_host(cfg.threads, cfg.keeps_freed_memory)
    memory_check(cfg)  # a plan that does not fit stops here, before anything is written
    with claim_run_dir(cfg, resume, overwrite) as run_dir:
        return run_training(cfg, run_dir, resume, quiet, watchers)


def run_training(cfg: RunConfig, run_dir: Path, resume: bool, quiet: bool, watchers: Sequence[Watcher] = ()) -> Path:
    """The controller: ask the rollout worker(s) for groups, the learner(s) for an update, then sync and check
    the engine (reasonrl/roles.py has the two roles, reasonrl/placement/ where they run; reasonrl/run.py the
    evaluations, logs and checkpoints). With algo.max_staleness = k the batch of step s is sampled k steps ahead."""
    task = load_task(cfg.task)  # everything that can reject the config runs before the run directory is made
    eval_examples = task.eval[: cfg.eval.size or cfg.task.eval_size]
    extra_sets = eval_sets(cfg, [n for n in cfg.eval.tasks if n != cfg.task.name])  # eval.tasks: eval/<task>/*
    run: Run | None = None
    learner, worker, close = make_roles(cfg, task.train, lambda line: log_line(run, line))
    sampler = AheadSampler(worker.sample, worker.update_weights, background=cfg.placement.name == "ray")
    try:
        sync = SyncCheck(learner.tokenizer, task.train, cfg.engine.verify, cfg.engine.verify_tolerance, cfg.model.dtype)
        engine = getattr(worker, "engine", None)  # local placement: the forgetting monitor samples with it
        forget = make_monitor(cfg, learner.policy, learner.tokenizer, engine, task.eval, run_dir)
        run = Run(
            cfg,
            run_dir,
            resume,
            quiet,
            cfg.steps,
            forget,
            lambda: (
                worker.evaluate(eval_examples, report=run.eval_progress()).to_dict(),  # type: ignore[union-attr]
                extra_eval_metrics(worker, extra_sets),
            ),
            save_adapter=learner.save_adapter,
            watchers=watchers,
        )

        def load(ckpt: Path, state: dict[str, Any]) -> None:
            learner.load(ckpt)
            learner.load_state_dict(state)
            sampler.restore(ckpt)  # the batches an asynchronous run had sampled ahead
            worker.update_weights(learner.weights(device=None))  # the engine serves the restored policy

        worker.update_weights(learner.weights(device=None))  # the engine serves the start policy
        start = run.begin(load, f"evaluating the base model on {len(eval_examples)} held-out problems ...")
        if hasattr(worker, "attach"):
            worker.attach(run_dir)
        sync.check(start, worker, learner)
        phases = StepPhases(cfg)  # memory/<phase>_gb; an out-of-memory error names its phase

        def save(path: Path) -> None:  # a checkpoint's tensors, and the batches sampled ahead of it
            learner.save(path)
            sampler.save(path)

        for step in range(start, cfg.steps):
            t0 = time.time()
            for ahead in range(step, min(step + cfg.algo.max_staleness, cfg.steps - 1) + 1):
                sampler.submit(ahead)
            with phases.phase("generate", step):
                collected, timings = sampler.collect(step)
            t1 = time.time()
            metrics = step_metrics(cfg, collected, timings, learner.version)
            metrics |= update_and_sync(step, collected, learner, worker, sampler, sync, phases)
            metrics |= {
                "time/generate": timings["generate"],
                "time/reward": timings["reward"],
                "time/update": time.time() - t1,
                "time/step": time.time() - t0,
                **phases.metrics,
            }
            if cfg.log_rollouts_every and (step + 1) % cfg.log_rollouts_every == 0:
                write_rollouts(
                    run_dir / "rollouts" / f"step_{step + 1:06d}.jsonl", step + 1, collected.sampled, learner.tokenizer
                )
            state = {"data_position": (step + 1) * cfg.prompts_per_step} | learner.state_dict()
            shown = {"reward": metrics["rollout/reward"], "s/step": metrics["time/step"]}
            if run.end_step(step, metrics, shown, state, save):
                break
        return run.finish(lambda d: write_dir_atomically(d / "adapter", learner.save_adapter))
    finally:
        sampler.close()
        close()


def update_and_sync(
    step: int, collected: Any, learner: Any, worker: Any, sampler: AheadSampler, sync: SyncCheck, phases: StepPhases
) -> dict[str, float]:
    """The learner's update on the step's groups, then the new weights pushed to the worker(s) and checked."""
    batch = (
        collate([t for g in collected.groups for t in g], worker.pad_id, learner.cfg.samples_per_prompt)
        if collected.groups
        else None
    )
    worker.sleep()  # colocated vLLM on a GPU frees its memory for the update
    with phases.phase("update", step):
        metrics = learner.step(batch)
    worker.wake()
    if batch is not None:
        sampler.push(learner.weights(device=None))
        t2 = time.time()
        metrics |= sampler.call(partial(sync.check, step + 1, worker, learner))
        metrics["time/verify"] = time.time() - t2
    return metrics


def step_metrics(cfg: RunConfig, collected: Any, timings: dict[str, float], version: int) -> dict[str, float]:
    """rollout/*, reward/*, sampling/* of a step's sample; with algo.max_staleness, rollout/staleness (policy
    updates between the oldest sampler of the batch and the learner now); with Ray, placement/restarts."""
    metrics = rollout_stats(collected.sampled, cfg.samples_per_prompt) | collected.metrics(
        cfg.algo.dynamic_sampling.enabled
    )
    versions = [t.info["version"] for t in collected.sampled if t.info.get("version") is not None]
    if cfg.algo.max_staleness and versions:
        metrics["rollout/staleness"] = float(version - min(versions))
    if "restarts" in timings:
        metrics["placement/restarts"] = timings["restarts"]
    return metrics


def log_line(run: Run | None, line: str) -> None:
    """A line above the progress bar once the run has one, else on stderr."""
    if run is not None and run.progress is not None:
        run.progress.write(line)
    else:
        print(line, file=sys.stderr, flush=True)


def extra_eval_metrics(worker: RolloutWorker, sets: list[tuple[str, list[Example]]]) -> dict[str, float]:
    """Metrics of the eval.tasks besides the run's task, under eval/<task>/..."""
    out: dict[str, float] = {}
    for name, examples in sets:
        out |= worker.evaluate(examples, name).metrics(f"eval/{name}")
    return out


def finish_run(run_dir: Path, summary: dict[str, Any], cfg: RunConfig, progress: Progress) -> None:
    """The end of a train or sft run: summary.json, the before/after table, and the report (log.report)."""
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    progress.write(format_summary(summary))
    if cfg.log.report and (report := write_report_safely(run_dir)) is not None:
        progress.write(f"report: {report}")


def summarize(evals: dict[str, Any], cfg: RunConfig) -> dict[str, Any]:
    """The before/after summary; without a step-0 evaluation (eval.before=skip) before and paired are None.
    With greedy evaluations (eval.greedy), paired_greedy compares those too."""
    steps = sorted(evals, key=int)
    after = EvalResult(**evals[steps[-1]])
    before = EvalResult(**evals["0"]) if "0" in evals and steps[-1] != "0" else None
    greedy = before is not None and before.greedy is not None and after.greedy is not None
    return {
        "task": cfg.task.name,
        "steps": int(steps[-1]),
        "after": _without_problems(after),
        "before": _without_problems(before) if before else None,
        "paired": paired_comparison(before, after) if before else None,
        "paired_greedy": paired_comparison(EvalResult(**before.greedy), EvalResult(**after.greedy))  # type: ignore[arg-type,union-attr]
        if greedy
        else None,
        "problems": problem_table(before, after) if before else None,
    }


def problem_table(before: EvalResult, after: EvalResult) -> dict[str, list[Any]]:
    """Each held-out problem's accuracy before and after (and greedy, when measured), aligned by id: what
    `reasonrl seeds` pools over seeds to pair the change over problems."""
    sides = {"before": before, "after": after}
    if before.greedy is not None and after.greedy is not None:
        sides |= {"greedy_before": EvalResult(**before.greedy), "greedy_after": EvalResult(**after.greedy)}
    rows = {name: {p["id"]: p["accuracy"] for p in r.per_problem} for name, r in sides.items()}
    ids = [i for i in rows["after"] if all(i in r for r in rows.values())]
    return {"id": ids} | {name: [r[i] for i in ids] for name, r in rows.items()}


def _without_problems(result: EvalResult) -> dict[str, Any]:
    out = result.to_dict() | {"per_problem": None}
    if out["greedy"] is not None:
        out["greedy"] = out["greedy"] | {"per_problem": None}
    return out


def _ci(r: dict[str, Any]) -> str:
    return f"[{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]" if r["accuracy_ci"] else "-"


def _acc(r: dict[str, Any]) -> str:
    return f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"


def _paired(p: dict[str, Any]) -> str:
    return f"{p['mean_diff']:+.3f} [{p['ci_low']:+.3f}, {p['ci_high']:+.3f}], {p['better']} better, {p['worse']} worse"


def format_summary(summary: dict[str, Any]) -> str:
    """The before/after table printed at the end of a run: accuracy with its interval, pass@k when there are
    several samples, greedy accuracy beside the sampled one (eval.greedy), reward, length, truncation."""
    b, a = summary["before"], summary["after"]
    rows = [("before", b)] * (b is not None) + [(f"after {summary['steps']}", a)]
    k = max((int(k) for k in a.get("pass_at_k", {}) if int(k) > 1), default=None)
    greedy = all(r.get("greedy") for _, r in rows)
    drawn = f"{a['samples_per_problem']} samples" + (" each, and greedy" if greedy else "")
    head = f"{'':10}{'sampled' if greedy else 'accuracy':>9}{'95% CI':>18}"
    head += f"{f'pass@{k}':>8}" * (k is not None) + f"{'greedy':>8}{'95% CI':>18}" * greedy
    lines = [
        f"\nheld-out {summary['task']}: {a['problems']} problems x {drawn}",
        head + f"{'reward':>8}{'length':>8}{'truncated':>11}",
    ]
    for label, r in rows:
        line = f"{label:10}{_acc(r):>9}{_ci(r):>18}"
        if k is not None:
            line += f"{r['pass_at_k'].get(str(k), float('nan')):>8.3f}"
        if greedy:
            line += f"{_acc(r['greedy']):>8}{_ci(r['greedy']):>18}"
        lines.append(line + f"{r['mean_reward']:>8.3f}{r['mean_length']:>8.1f}{r['truncation_rate']:>11.2f}")
    p, g = summary.get("paired") or {}, summary.get("paired_greedy") or {}
    lead = f"paired on the same {p.get('problems')} problems: "
    if p:
        lines.append(lead + ("sampled accuracy " if g else "accuracy change ") + _paired(p))
    if g:
        lines.append(" " * len(lead) + "greedy accuracy  " + _paired(g))
    if summary.get("forget"):
        lines.append(format_forget(summary["forget"]))
    if summary.get("stopped_early"):
        lines.append(f"stopped early: {summary['stopped_early']}")
    if best := summary.get("early_stop"):
        kept = f"; its adapter is in {best['adapter']}/" if best.get("adapter") else ""
        lines.append(f"best {best['metric']} {best['best']:.4g} at step {best['step']}{kept}")
    return "\n".join(lines)


def resume_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"--resume {run_dir}: no config.yaml there; is it a reasonrl run directory?")
    cfg = load_config(path)
    if cfg.output_dir != str(Path(run_dir).parent) or cfg.name != Path(run_dir).name:
        from dataclasses import replace

        cfg = replace(cfg, output_dir=str(Path(run_dir).parent), name=Path(run_dir).name)
    return cfg
