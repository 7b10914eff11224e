"""Command line: reasonrl train | sft | seeds | sweep | pipeline | eval | report | compare | rm | feedback | plan |
list.

    reasonrl train recipes/quickstart.yaml [key.sub=value ...] [--overwrite] [--quiet] [--check]
    reasonrl train --resume runs/quickstart
    reasonrl sft recipe.yaml [key=value ...] [--overwrite] [--quiet]      (or --resume RUN_DIR)
    reasonrl seeds recipes/quickstart.yaml --n 5 [key=value ...] [--first-seed S] [--quiet]
    reasonrl sweep recipes/quickstart.yaml --space SPACE.yaml [--trials 8] [--resume] [--storage URL] [key=value ...]
    reasonrl pipeline recipes/pipeline_tiny.yaml [key=value ...] [--overwrite] [--quiet]
    reasonrl eval [recipe.yaml] [key=value ...] [--adapter DIR | --run RUN_DIR] [--tasks a,b] [--json out.json]
    reasonrl report runs/quickstart [--out report.html] [--max-samples 2000]
    reasonrl compare RUN_DIR... | SWEEP_DIR [--out compare.html]
    reasonrl list [tasks|rewards|advantages|losses|kl|environments|engines] [--options NAME]
    reasonrl rm recipe.yaml rm.pairs=prefs.jsonl|auto name=rm [key=value ...] [--overwrite]
    reasonrl plan recipe.yaml [key=value ...] [--device cpu|cuda:80GB] [--arch qwen2.5-7b] [--fit [--out F.yaml]]
    reasonrl feedback RUN_DIR|RECIPE [--pairs 50] [--host H] [--port P] [--judge NAME]   |   feedback export RUN_DIR

Errors in user input print one line (`error: ...`) and exit with status 2; a failing reward or weight sync
exits 1. The first Ctrl-C (SIGINT) or SIGTERM stops a run after its current step with a checkpoint and exits
128 + the signal (130, 143); `--resume` continues it. A run's state is in RUN_DIR/state.json.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from reasonrl.plan.command import add_plan_command


def run_config(args: argparse.Namespace, example: str) -> Any:
    """The config of `train`/`sft`: a recipe with overrides, or a run's own config.yaml with --resume."""
    from reasonrl.config import load_config
    from reasonrl.train import resume_config

    if args.resume:
        if args.recipe or args.overrides:
            raise ValueError("--resume RUN_DIR takes no recipe or overrides: the run's config.yaml is reused as is")
        return resume_config(Path(args.resume))
    if args.recipe is None:
        raise ValueError(f"give a recipe (e.g. {example}) or --resume RUN_DIR")
    return load_config(*split_recipe(args.recipe, args.overrides))


def cmd_train(args: argparse.Namespace) -> None:
    from reasonrl.train import train

    cfg = run_config(args, "recipes/quickstart.yaml")
    if args.check:
        from reasonrl.check import check

        check(cfg)
        return
    run_dir = train(cfg, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet)
    print(f"run directory: {run_dir}")


def cmd_sft(args: argparse.Namespace) -> None:
    from reasonrl.sft import sft

    cfg = run_config(args, "recipes/pipeline_tiny.yaml")
    run_dir = sft(cfg, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet)
    print(f"run directory: {run_dir}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.pipeline import pipeline

    cfg = load_config(*split_recipe(args.recipe, args.overrides))
    print(f"pipeline directory: {pipeline(cfg, overwrite=args.overwrite, quiet=args.quiet)}")


def cmd_seeds(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.seeds import run_seeds

    cfg = load_config(*split_recipe(args.recipe, args.overrides))
    print(f"wrote {run_seeds(cfg, args.n, args.first_seed, args.quiet, args.metric, args.greedy)}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.sweep import sweep

    cfg = load_config(*split_recipe(args.recipe, args.overrides))
    where = sweep(
        cfg, args.space, args.trials, args.name, args.storage, args.resume, args.sampler, args.pruner, args.quiet
    )
    print(f"sweep directory: {where}")


def cmd_compare(args: argparse.Namespace) -> None:
    from reasonrl.report.compare import write_compare

    print(f"wrote {write_compare(args.paths, args.out)}")


def split_recipe(first: str | None, rest: list[str]) -> tuple[str | None, list[str]]:
    """The first positional is a recipe unless it looks like an override (key=value)."""
    if first is not None and "=" in first and not first.endswith((".yaml", ".yml")):
        return None, [first, *rest]
    return first, rest


def cmd_eval(args: argparse.Namespace) -> None:
    from reasonrl.eval_progress import EvalProgress
    from reasonrl.evaluate import eval_sets, evaluate_run, format_overview, format_result, load_for_eval
    from reasonrl.utils.config_io import config_to_dict
    from reasonrl.utils.host import configure_host

    cfg, adapter = eval_config(args)
    configure_host(cfg.threads, cfg.keeps_freed_memory)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] if args.tasks is not None else None
    if names is not None and not names:
        raise ValueError(
            f"--tasks {args.tasks!r} names no task; give e.g. --tasks reasoning_gym:chain_sum,reasoning_gym:gcd"
        )
    sets = eval_sets(cfg, names)  # every task loads (and can fail) before the model does
    policy, tokenizer, engine, env = load_for_eval(cfg)
    note = f", temperature {cfg.eval.temperature:g} (model {cfg.model.path}{', adapter ' + adapter if adapter else ''})"
    results = []
    try:
        for name, examples in sets:
            progress = EvalProgress(lambda line: print(line, file=sys.stderr, flush=True), f"evaluating {name}")
            results.append(evaluate_run(env, engine, tokenizer, examples, cfg, name, progress))
            print(format_result(results[-1], note) + "\n", flush=True)
    finally:
        env.close()
    if len(results) > 1:
        print(format_overview(results))
    if cfg.forget.enabled:  # retention and both KLs of this model against the base (adapter disabled)
        from reasonrl.forgetting import eval_report

        print(eval_report(cfg, policy, tokenizer, engine, sets[0][1]))
    if args.json:
        out = {
            "model": cfg.model.path,
            "adapter": adapter,
            "eval": config_to_dict(cfg.eval),
            "tasks": {r.task: r.to_dict() for r in results},
        }
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")


def eval_config(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The config `reasonrl eval` runs with (a run's own, or recipe + overrides) and the adapter it loads."""
    from reasonrl.config import apply_overrides, load_config
    from reasonrl.train import resume_config

    adapter = args.adapter
    if args.run:
        cfg = resume_config(Path(args.run))
        adapter = adapter or str(Path(args.run) / "adapter")
        cfg = apply_overrides(cfg, [o for o in [args.recipe, *args.overrides] if o])
    else:
        recipe, overrides = split_recipe(args.recipe, args.overrides)
        cfg = load_config(recipe, overrides)
    if adapter:
        if not Path(adapter).is_dir():
            raise ValueError(f"adapter directory {adapter!r} not found")
        cfg = replace(cfg, model=replace(cfg.model, adapter=adapter))
    return cfg, adapter


def cmd_report(args: argparse.Namespace) -> None:
    from reasonrl.report import write_report
    from reasonrl.run import describe_state

    print(f"wrote {write_report(args.run_dir, args.out, args.max_samples)}")
    print(describe_state(Path(args.run_dir)))


def cmd_list(args: argparse.Namespace) -> None:
    from reasonrl.listing import describe, list_all  # an index: no torch, no registries imported

    print(describe(args.options, args.kind) if args.options else list_all(args.kind))


def cmd_rm(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.rm import train_rm

    train_rm(load_config(*split_recipe(args.recipe, args.overrides)), overwrite=args.overwrite, quiet=args.quiet)


def cmd_feedback(args: argparse.Namespace) -> None:
    from reasonrl.feedback import main as feedback

    feedback(args)


def quiet_libraries() -> None:
    """Keep the console for our progress: no per-tensor loading bars or deprecation notices from libraries."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*past_key_values.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def add_feedback_commands(sub: Any) -> None:
    """`reasonrl rm` and `reasonrl feedback`."""
    p = sub.add_parser("rm", help="train a reward model (Bradley-Terry) from preference pairs, or auto pairs")
    p.add_argument(
        "recipe", help="YAML recipe: model, LoRA, task (for rm.pairs=auto), optim (e.g. recipes/quickstart.yaml)"
    )
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. rm.pairs=prefs.jsonl name=rm")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_rm)
    add_plan_command(sub, split_recipe)
    p = sub.add_parser("feedback", help="people compare two answers in a browser; export the preferences")
    p.add_argument(
        "target",
        nargs="+",
        metavar="RUN_DIR | RECIPE | export RUN_DIR",
        help="serve pairs of a run or a recipe's model, or export",
    )
    p.add_argument("--pairs", type=int, default=50, help="pairs to make (default 50)")
    p.add_argument(
        "--source",
        choices=["rollouts", "model"],
        default="rollouts",
        help="rollouts: two samples of one prompt from the run's rollouts; model: the run's policy against its base "
        "model on held-out problems (sampled at start)",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (beyond 127.0.0.1 the page needs the token)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--judge", help="the judge's name (the page asks otherwise)")
    p.add_argument("--seed", type=int, default=0, help="which completions are paired")
    p.add_argument("--out", help="export: the preferences file (default RUN_DIR/preferences.jsonl)")
    p.add_argument("--sft", help="export: the demonstrations file (default RUN_DIR/demonstrations.jsonl)")
    p.set_defaults(func=cmd_feedback)


def add_tuning_commands(sub: Any) -> None:
    """`reasonrl seeds` and `reasonrl sweep`."""
    p = sub.add_parser("seeds", help="train a recipe over several seeds: before/after accuracy with 95% intervals")
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. steps=20")
    p.add_argument("--n", type=int, default=5, help="how many seeds (default 5)")
    p.add_argument("--first-seed", type=int, help="the first seed (default: the config's seed)")
    p.add_argument("--metric", default="accuracy", help="accuracy (default) or mean_reward (tasks without answers)")
    p.add_argument("--greedy", action="store_true", help="also the greedy accuracy of the start model and each adapter")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    p.set_defaults(func=cmd_seeds)
    p = sub.add_parser("sweep", help="search hyperparameters on Optuna (pruning on evaluations); each trial a run")
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every trial, e.g. steps=20 eval.every=5")
    p.add_argument("--space", required=True, help="the search space (YAML; see docs/tuning.md)")
    p.add_argument("--trials", type=int, default=8, help="finished trials to reach (default 8)")
    p.add_argument("--name", help="the sweep's name (default <recipe name>-sweep)")
    p.add_argument("--storage", help="an Optuna RDB URL shared by several processes (default: sweep.db, SQLite)")
    p.add_argument("--resume", action="store_true", help="continue the sweep (resumes trials left by a crash)")
    p.add_argument("--sampler", default="tpe", help="tpe (default), random or grid")
    p.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    p.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonrl", description="RL for reasoning language models")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text, example in (
        ("train", cmd_train, "train a policy with RL (GRPO + LoRA by default)", "algo.kl.coef=0.01 lora.rank=8"),
        (
            "sft",
            cmd_sft,
            "supervised fine-tuning on demonstrations (sft.data) or the task's solutions",
            "sft.data=demos.jsonl lora.enabled=false",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
        p.add_argument("overrides", nargs="*", help=f"dotted overrides, e.g. {example}")
        p.add_argument("--resume", metavar="RUN_DIR", help=f"continue a {name} run from its last checkpoint")
        p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
        p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
        if name == "train":
            p.add_argument(
                "--check",
                action="store_true",
                help="check the config, the task and the rewards on "
                "reference answers, estimate a step's time and memory; train nothing",
            )
        p.set_defaults(func=func)
    add_tuning_commands(sub)
    p = sub.add_parser(
        "pipeline", help="pretrain a tiny model from scratch (pretrain.steps=0: take model.path), SFT it, then RL it"
    )
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/pipeline_tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.steps=200 steps=20")
    p.add_argument("--overwrite", action="store_true", help="replace an existing pipeline directory")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("eval", help="evaluate a model or adapter on held-out problems: pass@k, maj@k, reward")
    p.add_argument("recipe", nargs="?", help="YAML recipe or the first override")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--adapter", help="a PEFT adapter directory to evaluate")
    p.add_argument("--run", help="a run directory: its config and final adapter")
    p.add_argument(
        "--tasks",
        metavar="A,B",
        help="evaluate exactly these tasks (comma-separated) instead of the "
        "run's task and eval.tasks; the run's own task name keeps its task.* settings",
    )
    p.add_argument("--json", help="also write the full results (per task, per problem) as JSON")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("report", help="write a run's self-contained HTML report (curves, evals, traces)")
    p.add_argument("run_dir", help="a run directory (finished, running or interrupted)")
    p.add_argument("--out", help="where to write the page (default RUN_DIR/report.html)")
    p.add_argument("--max-samples", type=int, default=2000, help="cap on embedded traces (default 2000)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("compare", help="one HTML page comparing runs, or a sweep's trials")
    p.add_argument("paths", nargs="+", help="run directories, or one sweep directory")
    p.add_argument("--out", help="where to write the page (default SWEEP_DIR/compare.html, else ./compare.html)")
    p.set_defaults(func=cmd_compare)
    add_feedback_commands(sub)
    p = sub.add_parser("list", help="list the registered tasks, rewards, algorithms, environments, engines")
    p.add_argument(
        "kind",
        nargs="?",
        choices=["tasks", "rewards", "advantages", "losses", "kl", "environments", "engines"],
        help="one registry, a line per name",
    )
    p.add_argument(
        "--options",
        metavar="NAME",
        help="a name's options with types and defaults (a reward, an environment, or reasoning_gym:<dataset>)",
    )
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> None:
    from reasonrl.errors import RunFailure, RunStopped

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides after a flag (`train recipe a=1 --overwrite b=2`) are left over by argparse: they are overrides too.
    if extra and hasattr(args, "overrides") and not any(x.startswith("-") for x in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command not in ("list", "report", "feedback"):  # those never load a model: keep them fast
        quiet_libraries()
    try:
        args.func(args)
    except BrokenPipeError:  # `reasonrl list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except (ValueError, KeyError, FileNotFoundError) as e:
        if os.environ.get("REASONRL_DEBUG"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except RunFailure as e:  # a reward that fails (on_error=stop, the breaker), a failed sync, a loss that stays NaN
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT) or os.environ.get("REASONRL_DEBUG"):
            raise
        print(
            f"error: no space left on the device while writing {e.filename or 'a file'}; the checkpoints "
            "written before are intact: free some space, then continue with --resume RUN_DIR",
            file=sys.stderr,
        )
        sys.exit(1)
    except RunStopped as e:  # SIGINT/SIGTERM: the step finished and was checkpointed
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("interrupted; resume with `reasonrl train --resume RUN_DIR` from the last checkpoint", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
