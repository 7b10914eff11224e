"""Command line: reasonrl train | sft | pipeline | eval | list.

    reasonrl train recipes/quickstart.yaml [key.sub=value ...] [--overwrite] [--quiet]
    reasonrl train --resume runs/quickstart
    reasonrl sft recipe.yaml [key=value ...] [--overwrite] [--quiet]      (or --resume RUN_DIR)
    reasonrl pipeline recipes/pipeline_tiny.yaml [key=value ...] [--overwrite] [--quiet]
    reasonrl eval [recipe.yaml] [key=value ...] [--adapter DIR | --run RUN_DIR] [--json out.json]
    reasonrl list

Errors in user input print one line (`error: ...`) and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.train import resume_config, train

    if args.resume:
        if args.recipe or args.overrides:
            raise ValueError("--resume RUN_DIR takes no recipe or overrides: the run's config.yaml is reused as is")
        cfg = resume_config(Path(args.resume))
    else:
        if args.recipe is None:
            raise ValueError("give a recipe (e.g. recipes/quickstart.yaml) or --resume RUN_DIR")
        recipe, overrides = split_recipe(args.recipe, args.overrides)
        cfg = load_config(recipe, overrides)
    run_dir = train(cfg, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet)
    print(f"run directory: {run_dir}")


def cmd_sft(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.sft import sft
    from reasonrl.train import resume_config

    if args.resume:
        if args.recipe or args.overrides:
            raise ValueError("--resume RUN_DIR takes no recipe or overrides: the run's config.yaml is reused as is")
        cfg = resume_config(Path(args.resume))
    else:
        if args.recipe is None:
            raise ValueError("give a recipe (e.g. recipes/pipeline_tiny.yaml) or --resume RUN_DIR")
        cfg = load_config(*split_recipe(args.recipe, args.overrides))
    run_dir = sft(cfg, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet)
    print(f"run directory: {run_dir}")


def cmd_pipeline(args: argparse.Namespace) -> None:
    from reasonrl.config import load_config
    from reasonrl.pipeline import pipeline

    cfg = load_config(*split_recipe(args.recipe, args.overrides))
    print(f"pipeline directory: {pipeline(cfg, overwrite=args.overwrite, quiet=args.quiet)}")


def split_recipe(first: str | None, rest: list[str]) -> tuple[str | None, list[str]]:
    """The first positional is a recipe unless it looks like an override (key=value)."""
    if first is not None and "=" in first and not first.endswith((".yaml", ".yml")):
        return None, [first, *rest]
    return first, rest


def cmd_eval(args: argparse.Namespace) -> None:
    from reasonrl.config import apply_overrides, load_config
    from reasonrl.engine import ENGINES, SamplingParams
    from reasonrl.envs import make_environment
    from reasonrl.evaluate import evaluate
    from reasonrl.model import load_policy
    from reasonrl.tasks import load_task
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
    torch_threads(cfg.threads)
    task = load_task(cfg.task)
    examples = task.eval[: cfg.eval.size or cfg.task.eval_size]
    policy, tokenizer = load_policy(cfg.model, cfg.lora)
    engine = ENGINES.get(cfg.engine.name)(policy, tokenizer, cfg.engine)
    env = make_environment(cfg)
    params = SamplingParams(cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens, cfg.eval.temperature,
                            cfg.sampling.top_p)
    try:
        result = evaluate(env, engine, tokenizer, examples, params, cfg.eval.samples, seed=cfg.seed + 12345,
                          task=cfg.task.name)
    finally:
        env.close()
    acc = "-" if result.accuracy is None else f"{result.accuracy:.3f}"
    ci = "" if result.accuracy_ci is None else f" [{result.accuracy_ci[0]:.3f}, {result.accuracy_ci[1]:.3f}]"
    print(f"{cfg.task.name}: {result.problems} problems x {result.samples_per_problem} samples "
          f"(model {cfg.model.path}{', adapter ' + adapter if adapter else ''})")
    print(f"accuracy {acc}{ci}  mean reward {result.mean_reward:.3f}  mean length {result.mean_length:.1f} tokens"
          f"  truncated {result.truncation_rate:.2f}")
    print("reward parts: " + ", ".join(f"{k}={v:.3f}" for k, v in result.reward_parts.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
        print(f"wrote {args.json}")


def cmd_list(args: argparse.Namespace) -> None:
    from reasonrl.algos import ADVANTAGES, KL_ESTIMATORS, POLICY_LOSSES
    from reasonrl.engine import ENGINES
    from reasonrl.envs import ENVS
    from reasonrl.rewards import REWARDS
    from reasonrl.tasks import TASKS, reasoning_gym_names

    print("tasks:        " + ", ".join(TASKS.names()) + "  (reasoning_gym:<dataset>; jsonl, json, csv, parquet, hf with task.path)")
    print(f"  reasoning_gym datasets ({len(reasoning_gym_names())}): " + ", ".join(reasoning_gym_names()))
    print("rewards:      " + ", ".join(REWARDS.names()) + "  (or module:function, path/file.py:function)")
    print("advantages:   " + ", ".join(ADVANTAGES.names()))
    print("losses:       " + ", ".join(POLICY_LOSSES.names()))
    print("kl:           " + ", ".join(KL_ESTIMATORS.names()))
    print("environments: " + ", ".join(ENVS.names()))
    print("engines:      " + ", ".join(ENGINES.names()))


def torch_threads(threads: int | None) -> None:
    import torch
    torch.set_num_threads(threads or torch.get_num_threads())


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonrl", description="RL for reasoning language models")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a policy with RL (GRPO + LoRA by default)")
    p.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.kl.coef=0.01 lora.rank=8")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("sft", help="supervised fine-tuning on demonstrations (sft.data) or the task's solutions")
    p.add_argument("recipe", nargs="?", help="YAML recipe (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.data=demos.jsonl lora.enabled=false")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an SFT run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_sft)
    p = sub.add_parser("pipeline", help="pretrain a tiny model from scratch, SFT it, then RL it (DeepSeekMath)")
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/pipeline_tiny.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.steps=200 steps=20")
    p.add_argument("--overwrite", action="store_true", help="replace an existing pipeline directory")
    p.add_argument("--quiet", action="store_true", help="log lines instead of progress bars")
    p.set_defaults(func=cmd_pipeline)
    p = sub.add_parser("eval", help="evaluate a model or adapter on a task's held-out problems")
    p.add_argument("recipe", nargs="?", help="YAML recipe or the first override")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--adapter", help="a PEFT adapter directory to evaluate")
    p.add_argument("--run", help="a run directory: its config and final adapter")
    p.add_argument("--json", help="also write the full result (per-problem) as JSON")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("list", help="list the registered tasks, rewards, advantages, losses, engines")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> None:
    from reasonrl.rewards.compose import RewardError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        if os.environ.get("REASONRL_DEBUG"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except RewardError as e:  # rewards.on_error=raise: stop with the failing sample, checkpoints intact
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted; resume with `reasonrl train --resume RUN_DIR` from the last checkpoint",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
