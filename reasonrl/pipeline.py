"""The DeepSeekMath pipeline in miniature (arXiv:2402.03300, section 2): pretrain, SFT, RL.

    reasonrl pipeline recipes/pipeline_tiny.yaml [key=value ...] [--overwrite] [--quiet]

1. pretrain  a randomly initialised Llama on text (pretrain.*; pretrain.py), full fine-tuning, every token;
2. sft       that model on demonstrations (sft.*; sft.py): the task's worked solutions by default;
3. rl        from the SFT weights with the recipe's algorithm (train.py): model.path=<sft>/model after full
             fine-tuning; with LoRA the SFT adapter keeps training (model.adapter=<sft>/adapter).
Each stage is an ordinary run directory under output_dir/name/ (pretrain/, sft/, rl/); every stage starts
from the previous stage's output. With pretrain.steps=0 there is no pretraining: SFT starts from the recipe's
model.path (a pretrained model, e.g. the bundled one), whose row is then called "base". The held-out accuracy
after each stage is measured on the same problems with the same eval settings: pretrain-only (or base) is the
SFT run's start evaluation, SFT its final one, RL the RL run's final one, sampled and (when eval.greedy is on)
greedy, with paired changes. The table is printed and written to output_dir/name/pipeline.json.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig, save_config
from reasonrl.pretrain import pretrain, pretraining_lines
from reasonrl.sft import sft
from reasonrl.train import claim_run_dir, train
from reasonrl.utils.files import atomic_write_text


def stage_config(cfg: RunConfig, root: Path, name: str, **model: Any) -> RunConfig:
    return replace(cfg, output_dir=str(root), name=name, model=replace(cfg.model, **model))


def rl_start(sft_dir: Path, pretrained: Path | str) -> dict[str, Any]:
    """model.* for the RL stage: the SFT model directory, or the pretrained model with the SFT adapter."""
    if (sft_dir / "model").is_dir():
        return {"path": str(sft_dir / "model"), "adapter": None}
    return {"path": str(pretrained), "adapter": str(sft_dir / "adapter")}


def pipeline(cfg: RunConfig, overwrite: bool = False, quiet: bool = False) -> Path:
    """Run the three stages; returns output_dir/name (with pipeline.json, the per-stage table)."""
    if cfg.pretrain.steps:
        pretraining_lines(cfg)  # reject a bad pretrain.text before anything is written
    if cfg.eval.before == "skip":
        raise ValueError(
            "eval.before=skip: the pipeline compares every stage with the one before it; use auto "
            "(reuses a cached start evaluation) or always"
        )
    with claim_run_dir(cfg, resume=False, overwrite=overwrite, command="pipeline") as root:
        return run_pipeline(cfg, root, quiet)


def run_pipeline(cfg: RunConfig, root: Path, quiet: bool) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    save_config(cfg, root / "config.yaml")
    first = "pretrain" if cfg.pretrain.steps else "base"
    t0 = time.time()
    pretrained = pretrain(cfg, root / "pretrain", quiet=quiet) if cfg.pretrain.steps else cfg.model.path
    times = {first: time.time() - t0}
    t0 = time.time()
    sft_dir = sft(stage_config(cfg, root, "sft", path=str(pretrained), adapter=None), quiet=quiet)
    times["sft"] = time.time() - t0
    t0 = time.time()
    rl_dir = train(stage_config(cfg, root, "rl", **rl_start(sft_dir, pretrained)), quiet=quiet)
    times["rl"] = time.time() - t0
    result = stage_table(
        json.loads((sft_dir / "summary.json").read_text()),
        json.loads((rl_dir / "summary.json").read_text()),
        times,
        first,
    )
    atomic_write_text(root / "pipeline.json", json.dumps(result, indent=1))
    print(format_stages(result), flush=True)
    return root


def stage_table(
    sft_summary: dict[str, Any], rl_summary: dict[str, Any], times: dict[str, float], first: str = "pretrain"
) -> dict[str, Any]:
    """Accuracy after each stage (from the SFT and RL summaries), the paired changes, and wall times; `first`
    names the model SFT started from ("pretrain", or "base" when there was no pretraining)."""

    def row(result: dict[str, Any], stage: str) -> dict[str, Any]:
        return {
            "stage": stage,
            "accuracy": result["accuracy"],
            "accuracy_ci": result["accuracy_ci"],
            "greedy": (result.get("greedy") or {}).get("accuracy"),
            "mean_reward": result["mean_reward"],
            "mean_length": result["mean_length"],
            "wall_s": times[stage],
        }

    return {
        "task": sft_summary["task"],
        "problems": sft_summary["before"]["problems"],
        "samples_per_problem": sft_summary["before"]["samples_per_problem"],
        "stages": [
            row(sft_summary["before"], first),
            row(sft_summary["after"], "sft"),
            row(rl_summary["after"], "rl"),
        ],
        "rl_start_accuracy": rl_summary["before"]["accuracy"],
        "paired": {f"sft_vs_{first}": sft_summary.get("paired"), "rl_vs_sft": rl_summary.get("paired")},
        "paired_greedy": {
            f"sft_vs_{first}": sft_summary.get("paired_greedy"),
            "rl_vs_sft": rl_summary.get("paired_greedy"),
        },
    }


def format_stages(result: dict[str, Any]) -> str:
    lines = [
        f"\npipeline on held-out {result['task']}: {result['problems']} problems x "
        f"{result['samples_per_problem']} samples",
        f"{'stage':10}{'accuracy':>10}{'95% CI':>18}{'greedy':>8}{'reward':>9}{'length':>8}{'wall s':>9}",
    ]
    for r in result["stages"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        ci = f"[{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]" if r["accuracy_ci"] else "-"
        greedy = "-" if r.get("greedy") is None else f"{r['greedy']:.3f}"
        lines.append(
            f"{r['stage']:10}{acc:>10}{ci:>18}{greedy:>8}{r['mean_reward']:>9.3f}{r['mean_length']:>8.1f}"
            f"{r['wall_s']:>9.1f}"
        )
    for which, key in (("accuracy", "paired"), ("greedy accuracy", "paired_greedy")):
        for pair, p in result.get(key, {}).items():
            if p:
                lines.append(
                    f"{pair.replace('_vs_', ' vs ')}: {which} change {p['mean_diff']:+.3f} "
                    f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}] paired on {p['problems']} problems, "
                    f"{p['better']} better, {p['worse']} worse"
                )
    return "\n".join(lines)
