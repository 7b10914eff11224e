"""What each optimisation buys: the benchmark's reasonrl GRPO step with every optimisation on, then with one at a
time replaced by the straightforward way of computing the same thing.

    bench/.venv/bin/python bench/ablate.py                       # fp32, bundled SmolLM2, bench/grpo_bench.py's work
    bench/.venv/bin/python bench/ablate.py --dtype bfloat16 --only merge,shared_prefill

Same work and arguments as bench/grpo_bench.py (which also runs TRL); each variant runs in its own subprocess,
one after the other. Printed per variant: seconds per step (median of the steady steps) split into generation and
update, peak RSS, and how much slower the step is without that optimisation. Every variant computes the same
samples per step and the same loss; tests/unit/test_fast_paths.py, test_engine.py and test_prefix_cache.py check
that the optimised paths agree with the straightforward ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def no_shared_prefill() -> list[str]:
    """Prefill the prompt once per sample instead of once per group."""
    from reasonrl.engine.hf import HFEngine

    original = HFEngine.generate

    def generate(self, prompts, params, n, seed, keep=False):  # type: ignore[no-untyped-def]
        if n == 1:
            return original(self, prompts, params, n, seed, keep)
        flat = original(self, [p for p in prompts for _ in range(n)], params, 1, seed, keep)
        return [[g[0] for g in flat[i * n : (i + 1) * n]] for i in range(len(prompts))]

    HFEngine.generate = generate  # type: ignore[method-assign]
    return []


def no_merge() -> list[str]:
    """Decode through the LoRA model (adapter branches every token) instead of a merged copy."""
    return ["engine.hf.merge_lora=false"]


def growing_cache() -> list[str]:
    """transformers' DynamicCache (concatenates every decode step) instead of the reserved KV buffers."""
    import reasonrl.engine.hf as hf
    from transformers import DynamicCache

    hf.reserved_cache = lambda capacity: DynamicCache()
    return []


def linear_layout() -> list[str]:
    """fp32 only: the merged copy keeps nn.Linear's (out, in) weights instead of contiguous W^T."""
    import reasonrl.engine.hf as hf

    hf.transpose_linears = lambda model: model
    return []


def sliced_last_position() -> list[str]:
    """logits_to_keep=1 (a strided view of the last position) instead of an index (a contiguous gather)."""
    import reasonrl.engine.hf as hf

    hf.last_position = lambda ids: 1
    return []


def multinomial_sampler() -> list[str]:
    """torch.multinomial over the softmax instead of one-uniform inverse-CDF sampling."""
    import torch

    import reasonrl.engine.hf as hf

    def sample_next(logits, params, generator, blocked=None):  # type: ignore[no-untyped-def]
        logp = (logits.float() / max(params.temperature, 1e-6)).log_softmax(-1)
        probs = logp.exp()
        if blocked is not None:
            probs.index_fill_(-1, blocked, 0.0)
        token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return token, logp.gather(-1, token[:, None]).squeeze(-1)

    hf.sample_next = sample_next
    return []


def padded_update() -> list[str]:
    """Forward every row's prompt in the update (right-padded rows) instead of each group's prompt once."""
    import reasonrl.update as up

    original = up.policy_logprobs_entropy
    up.policy_logprobs_entropy = lambda model, tokens, mask, groups, *a, **k: original(
        model, tokens, mask, None, *a, **k
    )
    return []


def old_logp_pass() -> list[str]:
    """Compute old log-probs with an extra no-grad forward even though the update is on-policy (ratio 1)."""
    import reasonrl.update as up

    up.needs_old_logp = lambda cfg: True
    return []


def autograd_logprobs() -> list[str]:
    """log_softmax + gather under autograd, 64 positions at a time, instead of the fused TokenLogprobs function."""
    import torch

    import reasonrl.model as model

    class Unfused:
        @staticmethod
        def apply(logits, targets, temperature):  # type: ignore[no-untyped-def]
            chunks = [
                (logits[:, s : s + 64].float() / temperature)
                .log_softmax(-1)
                .gather(-1, targets[:, s : s + 64, None])
                .squeeze(-1)
                for s in range(0, logits.shape[1], 64)
            ]
            return torch.cat(chunks, dim=1)

    model.TokenLogprobs = Unfused  # type: ignore[misc,assignment]
    return []


def peft_lora_forward() -> list[str]:
    """peft's LoRA forward (separate adapter modules, scaled copy, sum) instead of the fused LoraLinear node."""
    import reasonrl.model as model

    model.fuse_lora_layers = lambda m: 0
    return []


def freed_memory_returned() -> list[str]:
    """glibc's default: large freed blocks go back to the OS (and page-fault in again) instead of being kept."""
    return ["keep_freed_memory=false"]


def fp32_adapter() -> list[str]:
    """bf16 runs only: peft's default, LoRA branches in fp32 with casts per layer, instead of bf16 under autocast."""
    import reasonrl.model as model

    model.half_precision_adapter = lambda m: contextlib.nullcontext()
    return []


ABLATIONS: dict[str, Callable[[], list[str]]] = {
    "shared_prefill": no_shared_prefill,
    "merge": no_merge,
    "transposed_weights": linear_layout,
    "reserved_cache": growing_cache,
    "last_position_index": sliced_last_position,
    "sampler": multinomial_sampler,
    "shared_prompt_update": padded_update,
    "skip_old_logp": old_logp_pass,
    "fused_logprobs": autograd_logprobs,
    "fused_lora": peft_lora_forward,
    "keep_freed_memory": freed_memory_returned,
    "bf16_adapter": fp32_adapter,
}


def run_variant(name: str, a: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--variant",
        name,
        f"--dtype={a.dtype}",
        f"--model={a.model}",
        f"--steps={a.steps}",
        f"--threads={a.threads}",
        f"--device={a.device}",
    ]
    print(f"running {name} ...", flush=True)
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    import grpo_bench

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--model", default="bundled")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(ABLATIONS))
    p.add_argument("--variant", help=argparse.SUPPRESS)
    a = p.parse_args()
    bench_args = argparse.Namespace(
        model=a.model,
        dtype=a.dtype,
        device=a.device,
        prompts=2,
        group=8,
        tokens=64,
        steps=a.steps,
        warmup=1,
        seed=0,
        threads=a.threads,
    )
    if a.variant:
        overrides = ABLATIONS[a.variant]() if a.variant != "all_on" else []
        print(json.dumps(grpo_bench.run_reasonrl(bench_args, overrides)), flush=True)
        return
    skip = {"bfloat16": ("transposed_weights", "fused_lora"), "float32": ("bf16_adapter",)}[a.dtype]  # no effect
    names = a.only.split(",") if a.only else [n for n in ABLATIONS if n not in skip]
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; choose from {', '.join(ABLATIONS)}")
    results = {n: run_variant(n, a) for n in ["all_on", *names]}
    medians = {
        n: {k: statistics.median(s[k] for s in r["steps"][1:] or r["steps"]) for k in ("step", "generate", "update")}
        for n, r in results.items()
    }
    base = medians["all_on"]["step"]
    print(
        f"\nreasonrl GRPO step, {a.dtype}, model {a.model}, 2 prompts x 8 x 64 tokens, {a.threads} threads; "
        f"median of {a.steps - 1} steady steps"
    )
    print(f"{'variant':34}{'s/step':>8}{'generate':>10}{'update':>8}{'RSS GB':>8}{'slower':>8}")
    for n, m in medians.items():
        label = "all optimisations on" if n == "all_on" else f"without {n}"
        print(
            f"{label:34}{m['step']:8.2f}{m['generate']:10.2f}{m['update']:8.2f}"
            f"{results[n]['peak_rss_gb']:8.2f}{m['step'] / base:7.2f}x"
        )


if __name__ == "__main__":
    main()
