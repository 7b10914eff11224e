"""Supervised fine-tuning on demonstrations: the SFT stage of the DeepSeekMath pipeline (SFT, then RL from the
SFT weights) and the offline baseline of the forgetting comparison.

    reasonrl sft recipes/pipeline_tiny.yaml sft.data=demos.jsonl     # or the task's reference solutions
    reasonrl train recipe.yaml model.adapter=runs/<sft>/adapter      # RL continues the SFT adapter (LoRA)
    reasonrl train recipe.yaml model.path=runs/<sft>/model           # RL from the SFT model (full fine-tuning)

Loss: the mean negative log-likelihood of the completion tokens (the reply and its stop token) of all the
demonstrations of an optimizer step; prompt and padding tokens get no loss:
    L = -sum_{rows, t} mask_t * log p(x_{t+1} | x_{<=t}) / sum mask
Demonstrations are packed into rows of sft.seq_len tokens with per-demonstration attention (sft_data.py).
Evaluation (eval.every and the end), checkpoints, the run directory and summary.json are those of `train`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from reasonrl.config import RunConfig
from reasonrl.engine import ENGINES
from reasonrl.evaluate import evaluate_run
from reasonrl.envs import make_environment
from reasonrl.model import is_lora, load_policy, token_logprobs, trainable_parameters
from reasonrl.model_files import save_model_dir
from reasonrl.sft_data import Sequence, collate_rows, encode_demo, end_of_turn_id, epoch_order, load_demos, pack_rows
from reasonrl.run import Run
from reasonrl.tasks import load_task
from reasonrl.train import claim_run_dir
from reasonrl.update import make_optimizer
from reasonrl.utils.ckpt import load_checkpoint, model_parts
from reasonrl.forgetting import make_monitor
from reasonrl.utils.host import configure_host
from reasonrl.utils.files import write_dir_atomically
from reasonrl.weights import weights_of


def completion_loss(logp: Tensor, mask: Tensor, normaliser: float) -> Tensor:
    """(B, T) log-probs of the next tokens, (B, T) bool mask -> -sum(logp over masked positions) / normaliser.
    Unmasked positions (prompt, padding) contribute nothing, not even a NaN or an infinity."""
    return -torch.where(mask, logp, torch.zeros_like(logp)).sum() / normaliser


def rows_logprobs(model: nn.Module, rows: list[list[Sequence]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(B, T) log-probs of every next token and the (B, T) completion mask of packed rows, each demonstration
    attending only to itself."""
    batch = collate_rows(rows, pad_id)
    dtype = cast(Callable[[], nn.Embedding], model.get_input_embeddings)().weight.dtype
    logp = token_logprobs(
        model, batch.tokens, attention_mask=batch.attention_mask(dtype), position_ids=batch.position_ids
    )  # (B, T)
    return logp, batch.mask


def sft_step(
    policy: nn.Module, optimizer: torch.optim.Optimizer, rows: list[list[Sequence]], pad_id: int, cfg: RunConfig
) -> dict[str, float]:
    """One optimizer step on `rows` (micro-batches of optim.micro_batch_size rows, gradients accumulated)."""
    count = sum(sum(s.mask) for row in rows for s in row)
    size = cfg.optim.micro_batch_size
    total = 0.0
    for start in range(0, len(rows), size):
        logp, mask = rows_logprobs(policy, rows[start : start + size], pad_id)  # (b, T), (b, T)
        loss = completion_loss(logp, mask, count)
        loss.backward()
        total += loss.item()
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(policy), cfg.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    tokens = sum(len(s.tokens) for row in rows for s in row)
    return {
        "sft/loss": total,
        "sft/completion_tokens": float(count),
        "sft/rows": float(len(rows)),
        "sft/fill": tokens / (len(rows) * cfg.sft.seq_len),
        "optim/grad_norm": float(grad_norm),
    }


@dataclass
class Plan:
    """Which rows (lists of sequence indices) each optimizer step trains on: consecutive slices of a stream of
    per-epoch shuffled, packed rows, so a step's data is a function of the step (exact resume)."""

    rows_per_step: int
    steps: int
    stream: list[list[int]]

    def rows(self, step: int) -> list[list[int]]:
        return self.stream[step * self.rows_per_step : (step + 1) * self.rows_per_step]


def make_plan(lengths: list[int], cfg: RunConfig) -> Plan:
    sft = cfg.sft
    rows_per_step = max(1, sft.batch_tokens // sft.seq_len)
    stream: list[list[int]] = []
    epoch = 0
    while (epoch < sft.epochs) if sft.steps is None else (len(stream) < sft.steps * rows_per_step):
        stream += pack_rows(lengths, sft.seq_len, sft.pack, epoch_order(len(lengths), cfg.seed, epoch))
        epoch += 1
    steps = sft.steps if sft.steps is not None else math.ceil(len(stream) / rows_per_step)
    return Plan(rows_per_step=rows_per_step, steps=steps, stream=stream)


def sft_config(cfg: RunConfig, steps: int) -> RunConfig:
    """The config the optimizer and scheduler see: sft.lr (when set) and the SFT step count."""
    return replace(cfg, steps=steps, optim=replace(cfg.optim, lr=cfg.sft.lr or cfg.optim.lr))


def save_result(policy: nn.Module, tokenizer: Any, run_dir: Path) -> Path:
    """LoRA: the adapter in run_dir/adapter (model.adapter=...); full fine-tuning: a model directory with
    its tokenizer in run_dir/model (model.path=...)."""
    if is_lora(policy):
        return write_dir_atomically(run_dir / "adapter", cast(Callable[[Path], None], policy.save_pretrained))
    return write_dir_atomically(run_dir / "model", lambda tmp: save_model_dir(policy, tokenizer, tmp))


def sft(cfg: RunConfig, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Path:
    """Fine-tune cfg.model on demonstrations; returns the run directory (adapter/ or model/, summary.json)."""
    configure_host(cfg.threads, cfg.keeps_freed_memory)
    with claim_run_dir(cfg, resume, overwrite, command="sft") as run_dir:
        return run_sft(cfg, run_dir, resume, quiet)


def run_sft(cfg: RunConfig, run_dir: Path, resume: bool, quiet: bool) -> Path:
    """The loop of `sft`, in a run directory this process holds."""
    task = load_task(cfg.task)
    eval_examples = task.eval[: cfg.eval.size or cfg.task.eval_size]
    demos = load_demos(cfg, task)
    env = make_environment(cfg)
    try:
        policy, tokenizer = load_policy(cfg.model, cfg.lora, seed=cfg.seed)
        stop_id = end_of_turn_id(tokenizer)
        sequences = [encode_demo(tokenizer, d, stop_id) for d in demos]
        long = [s for s in sequences if len(s.tokens) > cfg.sft.seq_len]
        if long:
            raise ValueError(
                f"{long[0].source}: demonstration has {len(long[0].tokens)} tokens > sft.seq_len="
                f"{cfg.sft.seq_len} ({len(long)} such); raise sft.seq_len"
            )
        plan = make_plan([len(s.tokens) for s in sequences], cfg)
        engine = ENGINES.get(cfg.engine.name)(cfg.model, cfg.lora, cfg.engine, tokenizer, shared=policy)
        forget = make_monitor(cfg, policy, tokenizer, engine, task.eval, run_dir)  # forget.*, as in train
        optimizer, scheduler = make_optimizer(policy, sft_config(cfg, plan.steps))

        def evaluate() -> tuple[dict[str, Any], dict[str, float]]:
            engine.update_weights(weights_of(policy, scheduler.last_epoch, device=None))  # version: steps taken
            return evaluate_run(env, engine, tokenizer, eval_examples, cfg, report=run.eval_progress()).to_dict(), {}

        run = Run(cfg, run_dir, resume, quiet, plan.steps, forget, evaluate, command="sft")
        start = run.begin(
            lambda ckpt, state: load_checkpoint(ckpt, policy, optimizer, scheduler),
            f"{len(sequences)} demonstrations, {plan.steps} steps of {plan.rows_per_step} rows; "
            f"evaluating the start model on {len(eval_examples)} held-out problems ...",
        )
        for step in range(start, plan.steps):
            t0 = time.time()
            rows = [[sequences[i] for i in row] for row in plan.rows(step)]
            metrics = sft_step(policy, optimizer, rows, engine.pad_id, cfg)
            scheduler.step()
            metrics |= {"optim/lr": scheduler.get_last_lr()[0], "time/step": time.time() - t0}
            if run.end_step(
                step,
                metrics,
                {"loss": metrics["sft/loss"], "s/step": metrics["time/step"]},
                {},
                model_parts(policy, optimizer, scheduler),
            ):
                break
        saved = run_dir / ("adapter" if is_lora(policy) else "model")  # where save_result writes
        return run.finish(lambda d: save_result(policy, tokenizer, d), {"stage": "sft", "saved": str(saved)})
    finally:
        env.close()
