"""Pretraining from scratch, the first stage of `reasonrl pipeline`: a randomly initialised Llama (byte
tokenizer) learns the next token of a text, loss on every token:
    L = -mean_{rows, t} log p(x_{t+1} | x_{<=t})
Each row is BOS followed by seq_len - 1 tokens of the text, starting at a random line. The text is either
'arithmetic' (the task's addition facts, `a+b=c` one per line, shuffled in every pass; it never contains a
task question, only the facts its worked solutions use) or a UTF-8 text file. The model is saved as a
directory that `model.path` loads (weights, config and a byte-tokenizer marker).
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path

import torch

from reasonrl.config import RunConfig
from reasonrl.model import token_logprobs
from reasonrl.model_files import save_model_dir, tiny_model
from reasonrl.tasks.arithmetic import addition_facts
from reasonrl.tokenizer import ByteTokenizer
from reasonrl.update import make_optimizer
from reasonrl.utils.log import JsonlSink, Progress
from reasonrl.utils.host import configure_host

PASSES = 64
"""Shuffled passes over the facts in the generated arithmetic text (rows start at random lines of it)."""


def pretraining_lines(cfg: RunConfig) -> list[str]:
    """The lines of the pretraining text (pretrain.text)."""
    if cfg.pretrain.text == "arithmetic":
        if cfg.task.name != "arithmetic":
            raise ValueError(
                f"pretrain.text=arithmetic generates the facts of task.name=arithmetic, but "
                f"task.name={cfg.task.name!r}; set task.name=arithmetic or pretrain.text=<text file>"
            )
        facts = addition_facts(cfg.task.options)
        rng = random.Random(cfg.seed)
        lines: list[str] = []
        for _ in range(PASSES):
            rng.shuffle(facts)
            lines += facts
        return lines
    path = Path(cfg.pretrain.text).expanduser()
    if not path.is_file():
        raise ValueError(
            f"pretrain.text {cfg.pretrain.text!r} is neither 'arithmetic' nor a text file "
            f"(resolved to {str(path.resolve())!r})"
        )
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"pretrain.text {cfg.pretrain.text!r} is empty")
    return lines


def text_rows(ids: list[int], line_starts: list[int], batch: int, seq_len: int, rng: random.Random) -> torch.Tensor:
    """(batch, seq_len) rows: BOS, then seq_len - 1 tokens of the text from a random line start (the text
    wraps around at its end)."""
    rows = []
    for _ in range(batch):
        start = rng.choice(line_starts)
        window = [ids[(start + k) % len(ids)] for k in range(seq_len - 1)]
        rows.append([ByteTokenizer.bos_token_id] + window)
    return torch.tensor(rows, dtype=torch.long)  # (B, T+1)


def pretrain(cfg: RunConfig, run_dir: Path, quiet: bool = False) -> Path:
    """Train a random tiny Llama on the pretraining text; returns the saved model directory (run_dir/model)."""
    p = cfg.pretrain
    configure_host(cfg.threads, cfg.keeps_freed_memory)
    tokenizer = ByteTokenizer()
    lines = pretraining_lines(cfg)
    ids: list[int] = []
    line_starts: list[int] = []
    for line in lines:
        line_starts.append(len(ids))
        ids += tokenizer.encode(line + "\n")
    model = tiny_model(
        vocab_size=tokenizer.vocab_size,
        seed=cfg.seed,
        hidden_size=p.hidden_size,
        layers=p.layers,
        heads=p.heads,
        initializer_range=0.02,
    )
    model.train()
    schedule = replace(
        cfg, steps=p.steps, optim=replace(cfg.optim, lr=p.lr, warmup_steps=max(1, p.steps // 20), schedule="cosine")
    )
    optimizer, scheduler = make_optimizer(model, schedule)
    run_dir.mkdir(parents=True, exist_ok=True)
    sink = JsonlSink(run_dir / "metrics.jsonl")
    progress = Progress(p.steps, 0, desc="pretrain", quiet=quiet)
    progress.write(
        f"pretraining a random Llama ({sum(x.numel() for x in model.parameters()) / 1e3:.0f}k "
        f"parameters) on {len(ids)} characters of text, {p.steps} steps of {p.batch_size}x{p.seq_len}"
    )
    rng = random.Random(cfg.seed)
    for step in range(p.steps):
        t0 = time.time()
        tokens = text_rows(ids, line_starts, p.batch_size, p.seq_len, rng)  # (B, T+1)
        loss = -token_logprobs(model, tokens).mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        metrics = {
            "pretrain/loss": loss.item(),
            "optim/grad_norm": float(grad_norm),
            "optim/lr": scheduler.get_last_lr()[0],
            "time/step": time.time() - t0,
        }
        sink.log(step + 1, metrics)
        if not progress.quiet or (step + 1) % 50 == 0 or step + 1 == p.steps:  # piped: a line per 50 steps
            progress.update(step, {"loss": metrics["pretrain/loss"]})
    progress.close()
    sink.close()
    model.eval()
    save_model_dir(model, tokenizer, run_dir / "model")
    return run_dir / "model"
