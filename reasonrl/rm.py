"""`reasonrl rm RECIPE [overrides]`: a reward model learned from preference pairs (Bradley-Terry), saved so that
the `reward_model` reward loads it as it is.

    reasonrl rm recipes/quickstart.yaml rm.pairs=runs/quickstart/preferences.jsonl name=rm   # people's pairs
    reasonrl rm recipes/quickstart.yaml rm.pairs=auto name=rm-auto       # pairs made from the task's verifier
    then: rewards.components={reward_model: 1.0} rewards.options={reward_model: {path: runs/rm/model}}

Model: model.path as a sequence classifier with one output (a fresh linear head on the last token), LoRA on its
linear layers (lora.*) and the head trained in full, seeded by `seed`. Input: exactly what the reward feeds it
(rewards/reward_model.encode: the prompt's chat messages with the answer as the assistant turn). Loss:
-log sigmoid(r(chosen) - r(rejected) - rm.margin), the mean over a step's pairs (Bradley-Terry, as in
InstructGPT; the margin as in Llama 2). Pairs are split by a hash of the prompt, so no prompt is in both: the
held-out pair accuracy (the share of held-out pairs with r(chosen) > r(rejected); ties count half) is printed
before and after training. `rm.pairs=auto` samples rm.auto_samples answers to each of the first
rm.auto_problems train problems with model.path and pairs a correct with an incorrect one (the task's `correct`
reward decides), the whole path without people; the pairs are kept in RUN_DIR/pairs.jsonl.

RUN_DIR holds config.yaml, metrics.jsonl (loss, accuracy, reward gap per step), summary.json (held-out accuracy
before and after) and model/ (the merged classifier and its tokenizer, written atomically at the end).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonrl.config import RunConfig, save_config
from reasonrl.utils.files import atomic_write_text, write_dir_atomically


@dataclass(frozen=True)
class PrefPair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class _Prompted:
    """What reward_model.encode reads from an example: its prompt messages."""

    prompt: list[dict[str, str]]


def as_messages(prompt: Any, where: str) -> list[dict[str, str]]:
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt):
        return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in prompt]
    raise ValueError(f"{where}: 'prompt' must be a non-empty string or a list of chat messages")


def read_pairs(path: Path) -> list[PrefPair]:
    """PrefPairs from JSONL ({prompt, chosen, rejected, ...}); the first bad line stops with file:line."""
    if not path.is_file():
        raise ValueError(f"rm.pairs={path}: no such file (give a preferences JSONL, or rm.pairs=auto)")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a record must be an object with prompt, chosen and rejected")
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"{where}: missing or empty {key!r} (a string)")
        if row["chosen"] == row["rejected"]:
            continue  # nothing to learn from
        pairs.append(PrefPair(as_messages(row.get("prompt"), where), row["chosen"], row["rejected"]))
    if len(pairs) < 4:
        raise ValueError(f"{path}: {len(pairs)} usable pairs; a reward model needs at least 4 (better: hundreds)")
    return pairs


def auto_pairs(cfg: RunConfig) -> list[PrefPair]:
    """A correct and an incorrect sample of the same train problem, sampled from model.path."""
    from reasonrl.engine import SamplingParams
    from reasonrl.evaluate import load_for_eval
    from reasonrl.rewards.builtin import correct
    from reasonrl.rollout import rollout
    from reasonrl.tasks import load_task

    task = load_task(cfg.task)
    problems = task.train[: cfg.rm.auto_problems]
    sampling = cfg.rewards.options.get("correct", {})
    _, tokenizer, engine, env = load_for_eval(cfg)
    started = time.time()
    if hasattr(engine, "progress"):  # the hf engine reports after each batch of prompts
        engine.progress = lambda done, total, _: print(
            f"rm: sampled {done}/{total} problems ({time.time() - started:.0f} s)", flush=True
        )
    try:
        params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p)
        trajectories = rollout(env, engine, tokenizer, problems, n=cfg.rm.auto_samples, params=params, seed=cfg.seed)
    finally:
        env.close()
    rng = random.Random(cfg.seed)
    pairs = []
    n = cfg.rm.auto_samples
    for g, example in enumerate(problems):
        group = trajectories[g * n : (g + 1) * n]
        verdicts = [(t.completion, correct(t.completion, example, **sampling)) for t in group]
        scored = [(c, float(s)) for c, s in verdicts if isinstance(s, int | float)]
        right = sorted({c for c, s in scored if s >= 1.0})
        wrong = sorted({c for c, s in scored if s < 1.0})
        combos = [(r, w) for r in right for w in wrong]
        prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in example.prompt]
        for chosen, rejected in rng.sample(combos, min(len(combos), cfg.rm.auto_pairs_per_problem)):
            pairs.append(PrefPair(prompt, chosen, rejected))
    if len(pairs) < 4:
        raise ValueError(
            f"rm.pairs=auto: only {len(pairs)} of {len(problems)} problems had both a correct and an incorrect "
            f"sample; raise rm.auto_problems or rm.auto_samples, or choose a task the model sometimes solves"
        )
    return pairs


def split(pairs: list[PrefPair], share: float) -> tuple[list[PrefPair], list[PrefPair]]:
    """(train, held-out) by a hash of the prompt: every pair of a prompt lands on the same side."""

    def held_out(p: PrefPair) -> bool:
        digest = hashlib.sha256(json.dumps(p.prompt, sort_keys=True).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < share

    train = [p for p in pairs if not held_out(p)]
    test = [p for p in pairs if held_out(p)]
    if not train or not test:
        raise ValueError(
            f"{len(pairs)} pairs over too few prompts to hold out {share:.0%} of them; add pairs or change "
            "rm.eval_share"
        )
    return train, test


def bradley_terry_loss(chosen: Any, rejected: Any, margin: float = 0.0) -> Any:
    """-log sigmoid(r_c - r_r - margin), the mean over pairs (softplus form: finite for any gap)."""
    import torch.nn.functional as F

    return F.softplus(-(chosen - rejected - margin)).mean()


def load_classifier(cfg: RunConfig) -> tuple[Any, Any]:
    """(model with LoRA and a trainable head, tokenizer) from model.path, seeded by cfg.seed."""
    import torch
    from peft import LoraConfig as PeftLoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from reasonrl.model import TINY, model_dir, torch_dtype

    if cfg.model.path == TINY:
        raise ValueError("reasonrl rm needs a Hugging Face model directory; tiny:llama has no tokenizer files")
    path = model_dir(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch_dtype(cfg.model))
        model.config.pad_token_id = tokenizer.pad_token_id
        if cfg.lora.enabled:
            peft_cfg = PeftLoraConfig(
                r=cfg.lora.rank,
                lora_alpha=cfg.lora.alpha,  # type: ignore[arg-type]
                lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
                task_type="SEQ_CLS",  # the score head is trained in full (modules_to_save)
            )
            model = get_peft_model(model, peft_cfg)
    for name, param in model.named_parameters():
        if "score" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
    return model, tokenizer


def scores(model: Any, tokenizer: Any, texts: list[str], prompts: list[list[dict[str, str]]], max_length: int) -> Any:
    from reasonrl.rewards.reward_model import encode

    batch = encode(tokenizer, texts, [_Prompted(p) for p in prompts], max_length)  # type: ignore[misc]
    return model(**batch).logits[:, 0].float()


def pair_accuracy(model: Any, tokenizer: Any, pairs: list[PrefPair], cfg: RunConfig) -> dict[str, float]:
    """Share of pairs with r(chosen) > r(rejected) (ties half) and the mean gap, without gradients."""
    import torch

    wins, gaps = 0.0, []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(pairs), cfg.rm.pairs_per_step):
            chunk = pairs[i : i + cfg.rm.pairs_per_step]
            prompts = [p.prompt for p in chunk]
            gap = scores(model, tokenizer, [p.chosen for p in chunk], prompts, cfg.rm.max_length) - scores(
                model, tokenizer, [p.rejected for p in chunk], prompts, cfg.rm.max_length
            )
            wins += float((gap > 0).sum() + 0.5 * (gap == 0).sum())
            gaps += gap.tolist()
    return {"accuracy": wins / len(pairs), "gap": sum(gaps) / len(gaps), "pairs": len(pairs)}


def fit(model: Any, tokenizer: Any, train: list[PrefPair], cfg: RunConfig, log: Any, quiet: bool) -> int:
    """rm.epochs passes of AdamW on the Bradley-Terry loss, rm.pairs_per_step pairs a step, shuffled by the seed;
    a metrics line per step into `log`. Returns the number of steps."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.rm.lr or cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
    )
    rng = random.Random(cfg.seed)
    total = math.ceil(len(train) / cfg.rm.pairs_per_step) * cfg.rm.epochs
    step, started = 0, time.time()
    for _ in range(cfg.rm.epochs):
        order = train[:]
        rng.shuffle(order)
        for i in range(0, len(order), cfg.rm.pairs_per_step):
            model.train()
            chunk = order[i : i + cfg.rm.pairs_per_step]
            prompts = [p.prompt for p in chunk]
            chosen = scores(model, tokenizer, [p.chosen for p in chunk], prompts, cfg.rm.max_length)
            rejected = scores(model, tokenizer, [p.rejected for p in chunk], prompts, cfg.rm.max_length)
            loss = bradley_terry_loss(chosen, rejected, cfg.rm.margin)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            step += 1
            gap = (chosen - rejected).detach()
            row = {
                "step": step,
                "loss": loss.detach().item(),
                "accuracy": float((gap > 0).float().mean()),
                "gap": float(gap.mean()),
                "grad_norm": float(grad_norm),
            }
            log.write(json.dumps(row) + "\n")
            log.flush()
            if not quiet and (step % 10 == 0 or step == total):
                print(
                    f"rm step {step}/{total} loss {row['loss']:.3f} train acc {row['accuracy']:.2f} "
                    f"({time.time() - started:.0f} s)",
                    flush=True,
                )
    return step


def train_rm(cfg: RunConfig, overwrite: bool = False, quiet: bool = False) -> Path:
    """Train a reward model per cfg.rm; returns the run directory (model/ inside)."""
    from reasonrl.train import claim_run_dir, prepare_run_dir
    from reasonrl.utils.host import configure_host

    configure_host(cfg.threads, cfg.keeps_freed_memory)
    with claim_run_dir(cfg, resume=False, overwrite=overwrite, command="rm") as run_dir:
        if cfg.rm.pairs == "auto":
            print(
                f"rm: sampling {cfg.rm.auto_samples} answers to each of "
                f"{min(cfg.rm.auto_problems, cfg.task.train_size)} problems of {cfg.task.name}",
                flush=True,
            )
            pairs = auto_pairs(cfg)
        else:
            pairs = read_pairs(Path(cfg.rm.pairs).expanduser())
        train, test = split(pairs, cfg.rm.eval_share)
        prepare_run_dir(run_dir, cfg, resume=False)
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_text(
            run_dir / "pairs.jsonl",
            "".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n" for p in pairs),
        )
        model, tokenizer = load_classifier(cfg)
        before = pair_accuracy(model, tokenizer, test, cfg)
        print(
            f"rm: {len(train)} training pairs, {len(test)} held out; "
            f"held-out pair accuracy before {before['accuracy']:.3f}",
            flush=True,
        )
        with (run_dir / "metrics.jsonl").open("w") as log:
            log.write(
                json.dumps({"step": 0, "eval/pair_accuracy": before["accuracy"], "eval/gap": before["gap"]}) + "\n"
            )
            step = fit(model, tokenizer, train, cfg, log, quiet)
            after = pair_accuracy(model, tokenizer, test, cfg)
            log.write(
                json.dumps({"step": step, "eval/pair_accuracy": after["accuracy"], "eval/gap": after["gap"]}) + "\n"
            )

        def save(target: Path) -> None:
            merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
            merged.save_pretrained(target)
            tokenizer.save_pretrained(target)

        write_dir_atomically(run_dir / "model", save)
        summary = {
            "pairs": {"train": len(train), "held_out": len(test)},
            "before": before,
            "after": after,
            "steps": step,
        }
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
        print(
            f"held-out pair accuracy: {before['accuracy']:.3f} before, {after['accuracy']:.3f} after "
            f"({len(test)} pairs; mean reward gap {before['gap']:+.3f} -> {after['gap']:+.3f})\n"
            f"reward model: {run_dir / 'model'} (rewards.options.reward_model.path)",
            flush=True,
        )
        return run_dir
