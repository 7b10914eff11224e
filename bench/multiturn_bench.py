"""Multi-turn rollout speed with and without prefix reuse between turns (engine.hf.prefix_cache), side by side.

    .venv/bin/python bench/multiturn_bench.py recipes/sokoban.yaml
    .venv/bin/python bench/multiturn_bench.py recipes/tool_math.yaml prompts_per_step=2 --repeats 2

One rollout step of the recipe (prompts_per_step x samples_per_prompt episodes, its turn and token limits) with
the same model, prompts and seeds, alternating the two settings --repeats times; prints seconds per rollout,
turns, sampled tokens, tokens fed to the model (prefill + decode) and the ratio. The trajectories must come out
the same (tokens compared; a different sample under a tiny numerical difference is reported, not hidden).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from reasonrl.config import load_config
    from reasonrl.engine import ENGINES, SamplingParams
    from reasonrl.envs import make_environment
    from reasonrl.model import load_policy
    from reasonrl.rollout import rollout
    from reasonrl.tasks import load_task

    cfg = load_config(args.recipe, args.overrides)
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    task, env = load_task(cfg.task), make_environment(cfg)
    policy, tok = load_policy(cfg.model, cfg.lora)
    params = SamplingParams(cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p)
    examples = task.train[: cfg.prompts_per_step]
    times: dict[bool, list[float]] = {True: [], False: []}
    fed = {True: 0, False: 0}
    outs = {}
    for _ in range(args.repeats):
        for enabled in (True, False):
            engine = ENGINES.get(cfg.engine.name)(
                cfg.model,
                cfg.lora,
                replace(cfg.engine, hf=replace(cfg.engine.hf, prefix_cache=enabled)),
                tok,
                shared=policy,
            )
            forward = engine.model.forward

            def counting(*a, _enabled=enabled, _forward=forward, **k):
                fed[_enabled] += k["input_ids"].numel()
                return _forward(*a, **k)

            engine.model.forward = counting
            t0 = time.perf_counter()
            outs[enabled] = rollout(env, engine, tok, examples, cfg.samples_per_prompt, params, seed=cfg.seed)
            times[enabled].append(time.perf_counter() - t0)
            print(f"prefix_cache={enabled}: {times[enabled][-1]:.1f} s", flush=True)
    env.close()
    same = sum(a.tokens == b.tokens for a, b in zip(outs[True], outs[False]))
    turns = sum(t.num_turns for t in outs[True])
    sampled = sum(sum(t.mask) for t in outs[True])
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"\n{cfg.name}: {len(outs[True])} episodes, {turns} turns, {sampled} sampled tokens, "
        f"{same}/{len(outs[True])} trajectories identical"
    )
    print(f"{'':14}{'s/rollout':>10}{'tokens fed':>12}")
    print(f"{'prefix reuse':14}{on:10.1f}{fed[True] // args.repeats:12d}")
    print(f"{'full prefill':14}{off:10.1f}{fed[False] // args.repeats:12d}")
    print(f"speed-up {off / on:.2f}x, {fed[False] / max(1, fed[True]):.1f}x fewer tokens fed")


if __name__ == "__main__":
    main()
