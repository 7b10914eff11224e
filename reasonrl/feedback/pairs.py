"""Pairs of answers for people to compare, taken from a run's saved rollouts (RUN_DIR/rollouts/step_*.jsonl).

    pairs = rollout_pairs(run_dir, limit=50, seed=0)

Each rollout group holds several completions of one prompt sampled by the policy at one step. A pair is two
different completions of a group, A and B in random order, labelled with the step that sampled them; the rest
of the group is the pool that 'regenerate' draws from. Groups are taken from the latest steps backwards (the
policy people are about to train further), at most one pair per group, and the choice is a function of the
seed, so the same command makes the same pairs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from reasonrl.feedback.store import Pair


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
            texts = list(dict.fromkeys(r["completion"] for r in rows if r["completion"].strip()))
            if len(texts) < 2:
                continue
            rng.shuffle(texts)
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
