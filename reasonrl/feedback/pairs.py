"""Pairs of answers for people to compare, taken from a run's saved rollouts (RUN_DIR/rollouts/step_*.jsonl),
from its policy against its base model (model_pairs), or from a recipe's model before training (recipe_pairs).

    pairs = rollout_pairs(run_dir, limit=50, seed=0)

Each rollout group holds several completions of one prompt sampled by the policy at one step. A pair is two
different completions of a group (different beyond case, spacing and a trailing period; with different final
answers when the group has two such), A and B in random order, labelled with the step that sampled them; the
rest of the group is the pool that 'regenerate' draws from. Groups are taken from the latest steps backwards (the
policy people are about to train further), at most one pair per group, and the choice is a function of the
seed, so the same command makes the same pairs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from reasonrl.feedback.store import Pair


def _shape(text: str) -> str:
    """Case, spacing and trailing punctuation removed: answers equal up to these are the same to a person."""
    return " ".join(text.lower().split()).rstrip(".!;, ")


def distinct(texts: list[str]) -> list[str]:
    """Non-empty texts, one per shape (the first of each)."""
    seen: dict[str, str] = {}
    for text in texts:
        if text.strip():
            seen.setdefault(_shape(text), text)
    return list(seen.values())


def contrasting_first(texts: list[str]) -> list[str]:
    """texts reordered so that the first two give different final answers when any two do (a person learns
    more from, and the reward model is taught more by, answers that disagree)."""
    from reasonrl.rewards.answers import canonical_answer, final_answer

    def answer(text: str) -> str | None:
        return canonical_answer(final_answer(text))  # what maj@k votes with

    first = answer(texts[0])
    for i, text in enumerate(texts[1:], 1):
        if answer(text) != first:
            return [texts[0], text, *texts[1:i], *texts[i + 1 :]]
    return texts


def rollout_pairs(run_dir: Path, limit: int = 50, seed: int = 0) -> list[Pair]:
    files = sorted((run_dir / "rollouts").glob("step_*.jsonl"), reverse=True)
    if not files:
        raise ValueError(
            f"{run_dir}: no rollouts/step_*.jsonl to make pairs from; train with log_rollouts_every > 0 first"
        )
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for path in files:
        groups: dict[tuple[int, int], list[dict]] = {}
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                groups.setdefault((row["step"], row["group"]), []).append(row)
        for (step, _), rows in sorted(groups.items()):
            texts = distinct([r["completion"] for r in rows])
            if len(texts) < 2:
                continue
            rng.shuffle(texts)
            texts = contrasting_first(texts)
            prompt = rows[0]["prompt"]
            source = f"policy, training step {step}"
            pairs.append(
                Pair(
                    prompt=json.dumps(prompt),
                    a=texts[0],
                    b=texts[1],
                    a_source=source,
                    b_source=source,
                    group=f"{rows[0]['id']}@{step}",
                    pool=tuple(texts[2:]),
                )
            )
            if len(pairs) == limit:
                return pairs
    return pairs


def model_pairs(run_dir: Path, limit: int = 50, samples: int = 3, seed: int = 0) -> list[Pair]:
    """Pairs of the run's trained policy against its base model on held-out problems (never trained on): one
    answer of each, sides in random order, `samples` answers of each drawn so that regenerate has a pool.
    Needs the run's adapter (LoRA); sampled here, once, so the server holds no model."""
    from reasonrl.engine import SamplingParams
    from reasonrl.evaluate import eval_sets, load_for_eval
    from reasonrl.tokenizer import encode_chat
    from reasonrl.train import resume_config

    adapter = run_dir / "adapter"
    if not (run_dir / "config.yaml").is_file() or not (adapter / "adapter_config.json").is_file():
        raise ValueError(
            f"{run_dir}: no config.yaml and LoRA adapter/ of a finished run to compare with its base model; "
            "give a run directory, or use --source rollouts"
        )
    cfg = resume_config(run_dir)
    from reasonrl.config import apply_overrides

    cfg = apply_overrides(cfg, [f"model.adapter={adapter}"])
    _, tokenizer, engine, env = load_for_eval(cfg)
    try:
        ((_, examples),) = eval_sets(cfg, [cfg.task.name])
    finally:
        env.close()
    examples = examples[:limit]
    prompts = [encode_chat(tokenizer, list(e.prompt)) for e in examples]
    params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p)
    sides = {
        name: [
            [tokenizer.decode(c.token_ids, skip_special_tokens=True).strip() for c in group]
            for group in engine.generate(prompts, params, n=samples, seed=seed, adapter=name == "policy")
        ]
        for name in ("policy", "base")
    }
    rng = random.Random(seed)
    step = json.loads((run_dir / "state.json").read_text()).get("step") if (run_dir / "state.json").is_file() else None
    labels = {"policy": f"policy after step {step}" if step else "policy", "base": "base model"}
    pairs = []
    for i, example in enumerate(examples):
        first = {name: next((t for t in sides[name][i] if t), "") for name in sides}
        if not all(first.values()) or first["policy"] == first["base"]:
            continue
        a, b = ("policy", "base") if rng.random() < 0.5 else ("base", "policy")
        pool = [t for name in sides for t in sides[name][i] if t and t not in first.values()]
        pairs.append(
            Pair(
                prompt=json.dumps([dict(m) for m in example.prompt]),
                a=first[a],
                b=first[b],
                a_source=labels[a],
                b_source=labels[b],
                group=example.id,
                pool=tuple(dict.fromkeys(pool)),
            )
        )
    return pairs


def recipe_pairs(cfg: Any, limit: int = 50, samples: int = 4, seed: int = 0) -> list[Pair]:
    """Pairs from a recipe's model (model.path, with model.adapter when set) before any training: `samples`
    answers to each of the first train problems, two different ones shown (disagreeing answers first when
    there are any), the rest the regenerate pool. Sampled here, once, so the server holds no model."""
    from reasonrl.engine import SamplingParams
    from reasonrl.evaluate import load_for_eval
    from reasonrl.tasks import load_task
    from reasonrl.tokenizer import encode_chat

    examples = load_task(cfg.task).train[: 2 * limit]  # some problems give only one distinct answer
    _, tokenizer, engine, env = load_for_eval(cfg)
    env.close()
    prompts = [encode_chat(tokenizer, list(e.prompt)) for e in examples]
    params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p)
    groups = engine.generate(prompts, params, n=samples, seed=seed)
    rng = random.Random(seed)
    source = f"{cfg.model.path}" + (f" + {cfg.model.adapter}" if cfg.model.adapter else "")
    pairs: list[Pair] = []
    for example, group in zip(examples, groups):
        texts = distinct([tokenizer.decode(c.token_ids, skip_special_tokens=True).strip() for c in group])
        if len(texts) < 2:
            continue
        rng.shuffle(texts)
        texts = contrasting_first(texts)
        prompt = json.dumps([dict(m) for m in example.prompt])
        pairs.append(Pair(prompt, texts[0], texts[1], source, source, example.id, tuple(texts[2:])))
        if len(pairs) == limit:
            break
    return pairs
