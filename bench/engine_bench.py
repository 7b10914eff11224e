"""The hf and vllm engines side by side on the same workload (default: the bundled model, 2 prompts x 8 samples of
64 tokens each, fixed length, LoRA rank 16 with a non-zero adapter, as in bench/grpo_bench.py): greedy agreement,
sampler log-probs against the trainer's, generation time and tokens/s, and the cost of one weight update.

    bash scripts/setup_vllm.sh && .venv-vllm/bin/python bench/engine_bench.py [--dtype bfloat16] [--rounds 3]

Runs in .venv-vllm (vLLM's CPU build there); both engines run in this one process, alternating per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = ["What is 17 + 25? Think step by step.", "Name three prime numbers and explain why they are prime."]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled:smollm2-135m-instruct")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    from reasonrl.config import EngineConfig, LoraConfig, ModelConfig
    from reasonrl.engine import ENGINES, SamplingParams
    from reasonrl.model import load_policy, policy_logprobs
    from reasonrl.tokenizer import encode_chat
    from reasonrl.utils.host import configure_host
    from reasonrl.weights import weights_of

    configure_host(args.threads)
    model_cfg, lora_cfg = ModelConfig(path=args.model, dtype=args.dtype), LoraConfig(rank=16)
    policy, tok = load_policy(model_cfg, lora_cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01, generator=gen)
    engines, build = {}, {}
    for name in ("hf", "vllm"):
        t0 = time.time()
        engines[name] = ENGINES.get(name)(model_cfg, lora_cfg, EngineConfig(), tok)
        build[name] = time.time() - t0
    sync = {name: [] for name in engines}
    for version in range(1, 4):
        update = weights_of(policy, version)
        for name, engine in engines.items():
            t0 = time.time()
            engine.update_weights(update)
            sync[name].append(time.time() - t0)
    prompts = [encode_chat(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]

    greedy = {n: e.generate(prompts, SamplingParams(args.tokens, 0.0), 1, 0) for n, e in engines.items()}
    agree = sum(a[0].token_ids == b[0].token_ids for a, b in zip(greedy["hf"], greedy["vllm"]))
    gaps = {}
    for name, engine in engines.items():
        worst = []
        for prompt, group in zip(prompts, engine.generate(prompts, SamplingParams(args.tokens, 1.0), 4, 1)):
            for c in group:
                tokens = torch.tensor([prompt + c.token_ids])
                with torch.no_grad():
                    want = policy_logprobs(
                        policy, tokens, torch.ones(1, tokens.shape[1] - 1, dtype=torch.bool), None, 1.0
                    )[0, len(prompt) - 1 :]
                worst.append(float((want - torch.tensor(c.logprobs)).abs().max()))
        gaps[name] = max(worst)

    fixed = SamplingParams(args.tokens, 1.0, min_new_tokens=args.tokens)
    times = {name: [] for name in engines}
    for r in range(args.rounds + 1):  # round 0 warms up
        order = list(engines) if r % 2 == 0 else list(reversed(engines))
        for name in order:
            t0 = time.time()
            engines[name].generate(prompts, fixed, args.samples, seed=r)
            if r:
                times[name].append(time.time() - t0)
    tokens = len(prompts) * args.samples * args.tokens
    print(
        f"{args.model} {args.dtype}, {len(prompts)} prompts x {args.samples} samples x {args.tokens} tokens "
        f"({tokens} tokens), {torch.get_num_threads()} threads, median of {args.rounds} rounds"
    )
    print(f"{'':28}{'hf':>12}{'vllm':>12}")
    print(f"{'build engine s':28}{build['hf']:>12.1f}{build['vllm']:>12.1f}")
    print(f"{'weight update s':28}{statistics.median(sync['hf']):>12.3f}{statistics.median(sync['vllm']):>12.3f}")
    th, tv = statistics.median(times["hf"]), statistics.median(times["vllm"])
    print(f"{'generate s':28}{th:>12.2f}{tv:>12.2f}")
    print(f"{'tokens/s':28}{tokens / th:>12.0f}{tokens / tv:>12.0f}")
    print(f"{'max |sampler - trainer| logp':28}{gaps['hf']:>12.1e}{gaps['vllm']:>12.1e}")
    print(f"greedy completions equal: {agree} of {len(prompts)}; vllm / hf tokens/s: {th / tv:.2f}x")
    engines["vllm"].close()


if __name__ == "__main__":
    main()
