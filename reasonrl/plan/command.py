"""`reasonrl plan RECIPE [overrides] [--device ...] [--arch ...] [--fit [--out F.yaml]]`: the plan's table, and
with --fit the settings that fit, printed as overrides and optionally written as a recipe. Exit 1 when the plan
does not fit (nor any setting, with --fit)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reasonrl.config import load_config
from reasonrl.plan.fit import fit, format_overrides, write_fitted
from reasonrl.plan.model import format_plan, plan_for


def cmd_plan(args: argparse.Namespace, split_recipe: Any) -> None:
    recipe, overrides = split_recipe(args.recipe, args.overrides)
    cfg = load_config(recipe, overrides)
    plan = plan_for(cfg, args.device, args.arch, args.prompt_tokens)
    print(format_plan(plan, cfg))
    if not args.fit:
        if not plan.fits:
            sys.exit(1)
        return
    found = fit(cfg, plan.device, plan.arch, plan.lengths["prompt"])
    if found is None:
        print("\nno setting fits: choose a smaller model, model.dtype=bfloat16, or a larger device", file=sys.stderr)
        sys.exit(1)
    chosen, fitted = found
    print(f"\nfitted: peak {fitted.peak / 2**30:.2f} GiB ({fitted.peak_phase}) with\n  {format_overrides(chosen)}")
    if args.out:
        write_fitted(recipe, overrides, chosen, Path(args.out))
        print(f"wrote {args.out}")


def add_plan_command(sub: Any, split_recipe: Any) -> None:
    p = sub.add_parser("plan", help="predict a run's peak memory part by part; --fit chooses settings that fit")
    p.add_argument("recipe", help="YAML recipe (e.g. recipes/gpu_qwen2.5-1.5b_24gb.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.micro_batch_size=4")
    p.add_argument("--device", help="cpu (this machine's free memory), cpu:24GB, cuda (the visible GPU), cuda:80GB")
    p.add_argument("--arch", help="plan this architecture of the shipped table instead of model.path's config")
    p.add_argument("--prompt-tokens", type=int, help="prompt length (default: the longest of the task's prompts)")
    p.add_argument("--fit", action="store_true", help="choose the largest micro-batch and engine share that fit")
    p.add_argument("--out", help="--fit: write the recipe with the fitted overrides to this YAML file")
    p.set_defaults(func=lambda args: cmd_plan(args, split_recipe))
