"""GRPO throughput: reasonrl against TRL's GRPOTrainer on the same work, side by side, in one invocation.

    make bench                                   # bundled SmolLM2-135M, fp32, 2 prompts x 8, 64 tokens
    bench/.venv/bin/python bench/grpo_bench.py --dtype bfloat16 --steps 6
    bench/.venv/bin/python bench/grpo_bench.py --rounds 2     # A B B A: drift of the machine cancels out
    bench/.venv/bin/python bench/grpo_bench.py --model shape:qwen2.5-0.5b --device cuda   # random weights, GPU
    make bench-vllm        # reasonrl with engine.name=vllm (in .venv-vllm) against TRL, and TRL with its vLLM

Same model, prompts, reward, group size, completion length (fixed: EOS is suppressed until the limit, so both
generate exactly the same number of tokens), LoRA (r16, alpha 32, all linear layers), dtype, learning rate and
seed; KL off (beta 0) in both. Each framework runs in its own subprocess, so peak RSS is its own. Printed per
framework: seconds per step (median of the steady steps, first `--warmup` dropped) split into generation /
scoring / update, generated and training tokens per second (training tokens = every prompt and completion
token of the batch, the same count for both), peak RSS, and utilisation: the FLOPs each side executes per phase
(2N per token forward, 4N per LoRA training token) against a matmul peak measured in the same run, and generation
speed against the memory-bandwidth bound (weight bytes read per decode step / measured copy bandwidth).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {  # random-weight models with real architectures' shapes (SmolLM2's vocabulary and tokenizer)
    "qwen2.5-0.5b": dict(
        model_type="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2",
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
}


def model_dir(name: str) -> Path:
    """bundled -> the converted SmolLM2 directory; shape:<arch> -> a random-weight model saved once."""
    from reasonrl.model_files import bundled_model_dir, cache_dir

    if name == "bundled":
        return bundled_model_dir()
    arch = name.removeprefix("shape:")
    target = cache_dir() / f"bench-{arch}"
    if not (target / "config.json").exists():
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        import torch

        src = bundled_model_dir()
        spec = dict(SHAPES[arch])
        config = AutoConfig.for_model(
            spec.pop("model_type"),
            vocab_size=49152,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=2,
            max_position_embeddings=4096,
            **spec,
        )
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(target)
        AutoTokenizer.from_pretrained(src).save_pretrained(target)
    return target


def examples(n: int):
    from reasonrl.config import TaskConfig
    from reasonrl.tasks import load_task

    task = load_task(
        TaskConfig(
            name="reasoning_gym:basic_arithmetic",
            train_size=max(n, 16),
            eval_size=4,
            options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
        )
    )
    return task.train[:n]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def peak_device_gb(device: str) -> float:
    """Peak GPU memory allocated by torch in this process (0 on CPU)."""
    import torch

    return torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else 0.0


# ---------------------------------------------------------------------------------------------------------
# The two sides. Each prints one JSON line: per-step timings and token counts.


def run_reasonrl(a: argparse.Namespace, overrides: tuple[str, ...] | list[str] = ()) -> dict:
    overrides = [*overrides, f"engine.name={a.engine}"]
    from reasonrl.config import load_config
    from reasonrl.train import train

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.jsonl"
        data.write_text(
            "".join(
                json.dumps({"prompt": e.prompt[-1]["content"], "answer": e.answer}) + "\n"
                for e in examples(a.prompts * (a.steps + 1) + 8)
            )
        )
        cfg = load_config(
            None,
            [
                f"model.path={model_dir(a.model)}",
                f"model.dtype={a.dtype}",
                f"model.device={a.device}",
                "lora.rank=16",
                "lora.alpha=32",
                f"output_dir={tmp}",
                "name=bench",
                f"steps={a.steps}",
                f"prompts_per_step={a.prompts}",
                f"samples_per_prompt={a.group}",
                f"sampling.max_new_tokens={a.tokens}",
                "task.name=jsonl",
                f"task.path={data}",
                "task.instruction=",
                "task.eval_size=4",
                "eval.size=1",
                "rewards.components={numeric: 1.0}",
                f"optim.micro_batch_size={a.prompts * a.group}",
                "optim.lr=2e-4",
                "optim.warmup_steps=0",
                "algo.kl.coef=0",
                "save_every=1000000",
                "log_rollouts_every=0",
                f"seed={a.seed}",
                f"threads={a.threads}",
                f"sampling.min_new_tokens={a.tokens}",
                *overrides,
            ],
        )
        run_dir = train(cfg, quiet=True)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    steps = [
        {
            "generate": r["time/generate"],
            "score": r["time/reward"],
            "update": r["time/step"] - r["time/generate"] - r["time/reward"],
            "step": r["time/step"],
        }
        for r in rows
    ]
    return {
        "steps": steps,
        "completion_tokens": a.prompts * a.group * a.tokens,
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_device_gb(a.device),
    }


def run_trl(a: argparse.Namespace) -> dict:
    import torch
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(a.threads)
    path = model_dir(a.model)
    timing = {"generate": 0.0, "score": 0.0}
    original_generate = transformers.GenerationMixin.generate

    def timed_generate(self, *args, **kwargs):
        t = time.time()
        try:
            return original_generate(self, *args, **kwargs)
        finally:
            timing["generate"] += time.time() - t

    transformers.GenerationMixin.generate = timed_generate
    if a.side == "trl-vllm":
        import vllm

        original_llm_generate = vllm.LLM.generate

        def timed_llm_generate(self, *args, **kwargs):
            t = time.time()
            try:
                return original_llm_generate(self, *args, **kwargs)
            finally:
                timing["generate"] += time.time() - t

        vllm.LLM.generate = timed_llm_generate

    def numeric(completions, answer, **kwargs):
        from reasonrl.rewards.answers import last_number, numbers_equal

        return [
            float(bool(numbers_equal(last_number(c[-1]["content"]) or "", ans))) for c, ans in zip(completions, answer)
        ]

    rows = [
        {"prompt": [{"role": "user", "content": e.prompt[-1]["content"]}], "answer": e.answer}
        for e in examples(a.prompts * (a.steps + 1) + 8)
    ]
    steps: list[dict] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.start, timing["generate"], timing["gas"] = time.time(), 0.0, 0.0

        def on_step_end(self, args, state, control, **kw):
            total = time.time() - self.start
            steps.append(
                {
                    "generate": timing["generate"],
                    "score": timing["gas"] - timing["generate"],
                    "update": total - timing["gas"],
                    "step": total,
                }
            )

    vllm = {}
    if a.side == "trl-vllm":  # TRL's own vLLM integration, in this process (colocate)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        vllm = dict(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3, vllm_enable_sleep_mode=False)
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=a.prompts * a.group,
            num_generations=a.group,
            max_completion_length=a.tokens,
            generation_kwargs={"min_new_tokens": a.tokens},
            learning_rate=2e-4,
            beta=0.0,
            max_steps=a.steps,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            seed=a.seed,
            use_cpu=a.device == "cpu",
            bf16=a.dtype == "bfloat16",
            gradient_checkpointing=a.trl_gradient_checkpointing,
            temperature=1.0,
            lr_scheduler_type="constant",
            warmup_steps=0,
            dataloader_num_workers=0,
            **vllm,
        )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, a.dtype))
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[numeric],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(path),
            peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
            callbacks=[Clock()],
        )
        gas = trainer._generate_and_score_completions

        def timed_gas(*args, **kwargs):
            t = time.time()
            try:
                return gas(*args, **kwargs)
            finally:
                timing["gas"] += time.time() - t

        trainer._generate_and_score_completions = timed_gas
        trainer.train()
    return {
        "steps": steps,
        "completion_tokens": a.prompts * a.group * a.tokens,
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_device_gb(a.device),
    }


# ---------------------------------------------------------------------------------------------------------
# The driver: hardware peaks, both sides in subprocesses, the table.


def hardware_peaks(dtype: str, threads: int, device: str = "cpu") -> dict:
    """Matmul FLOP/s (median of 5; 2048^2 on CPU, 8192^2 on GPU) in the dtype, and memory copy bandwidth
    (bytes read + written / s) on the device."""
    import torch

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    size = 8192 if device.startswith("cuda") else 2048
    x = torch.randn(size, size, dtype=getattr(torch, dtype), device=device)
    times = []
    for _ in range(6):
        sync()
        t = time.perf_counter()
        x @ x
        sync()
        times.append(time.perf_counter() - t)
    big = torch.empty(64 * 2**20 * (4 if device.startswith("cuda") else 1), dtype=torch.float32, device=device)
    out = torch.empty_like(big)
    copies = []
    for _ in range(5):
        sync()
        t = time.perf_counter()
        out.copy_(big)
        sync()
        copies.append(time.perf_counter() - t)
    return {
        "matmul_flops": 2 * size**3 / statistics.median(times[1:]),
        "bandwidth": 2 * big.numel() * 4 / statistics.median(copies[1:]),
    }


def work(a: argparse.Namespace) -> dict:
    """Token counts and parameter bytes of one step's work (identical for both frameworks)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from reasonrl.tokenizer import encode_chat

    path = model_dir(a.model)
    tok = AutoTokenizer.from_pretrained(path)
    prompts = [
        len(encode_chat(tok, [{"role": "user", "content": e.prompt[-1]["content"]}])) for e in examples(a.prompts)
    ]
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).parameters())
    completion = a.prompts * a.group * a.tokens
    return {
        "params": params,
        "prompt_tokens": sum(prompts),
        "completion_tokens": completion,
        "train_tokens": a.group * sum(prompts) + completion,
        "weight_bytes": params * (2 if a.dtype == "bfloat16" else 4),
    }


def summarise(name: str, result: dict, w: dict, peaks: dict, a: argparse.Namespace, skip: int | None = None) -> dict:
    """One side's table row: medians of the steps after the first `skip` (default a.warmup), rates, MFU."""
    skip = a.warmup if skip is None else skip
    steady = result["steps"][skip:] or result["steps"]
    med = {k: statistics.median(s[k] for s in steady) for k in ("generate", "score", "update", "step")}
    n = w["params"]
    # FLOPs each side actually executes: both prefill a prompt once per group when generating (TRL repeats the
    # prompt per sample: counted as such); in the update reasonrl runs each prompt once per group, TRL per sample.
    prefill = w["prompt_tokens"] * (1 if name == "reasonrl" else a.group)
    gen_flops = 2 * n * (prefill + w["completion_tokens"])
    executed = w["prompt_tokens"] + w["completion_tokens"] if name == "reasonrl" else w["train_tokens"]
    update_flops = 4 * n * executed  # LoRA: forward 2N + input-gradient backward 2N per token
    decode_bound = a.prompts * a.group * peaks["bandwidth"] / w["weight_bytes"]  # tokens/s if weights stream once
    return {
        **{f"s_{k}": v for k, v in med.items()},
        "gen_tok_s": w["completion_tokens"] / med["generate"],
        "train_tok_s": w["train_tokens"] / med["update"],
        "peak_rss_gb": result["peak_rss_gb"],
        "peak_gpu_gb": result.get("peak_gpu_gb", 0.0),
        "mfu_generate": gen_flops / med["generate"] / peaks["matmul_flops"],
        "mfu_update": update_flops / med["update"] / peaks["matmul_flops"],
        "gen_vs_bandwidth_bound": w["completion_tokens"] / med["generate"] / decode_bound,
        "steps_measured": len(steady),
    }


def pooled(results: list[dict], warmup: int) -> dict:
    """One side's runs as one result (to summarise with skip=0): every run's steps after its warm-up, the
    highest peak memory."""
    steady = [s for r in results for s in r["steps"][warmup:] or r["steps"]]
    return {
        **results[0],
        "steps": steady,
        "peak_rss_gb": max(r["peak_rss_gb"] for r in results),
        "peak_gpu_gb": max(r.get("peak_gpu_gb", 0.0) for r in results),
    }


def interpreter(name: str, a: argparse.Namespace) -> str:
    """The Python a side runs in: reasonrl with engine.name=vllm and TRL with vLLM need one that has vLLM."""
    chosen = a.reasonrl_python if name == "reasonrl" else a.trl_vllm_python if name == "trl-vllm" else None
    if chosen:
        return chosen
    own = ROOT / ".venv-vllm" / "bin" / "python"
    needs_vllm = name == "trl-vllm" or (name == "reasonrl" and a.engine == "vllm")
    return str(own) if needs_vllm and own.exists() else sys.executable


def side(name: str, a: argparse.Namespace) -> dict | None:
    """Run one framework in a fresh subprocess and read its JSON line. A trl-vllm side that fails (TRL's vLLM mode
    does not run on vLLM's CPU build) is reported in one line and left out; any other failure stops the bench."""
    flags = {k: v for k, v in vars(a).items() if k not in ("side", "json", "reasonrl_python", "trl_vllm_python")}
    cmd = [interpreter(name, a), __file__, "--side", name] + [
        f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')}={v}"
        for k, v in flags.items()
        if v is not False
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
        if name == "trl-vllm":
            errors = [line for line in out.stderr.splitlines() if "Error" in line] or [out.stderr[-300:]]
            print(f"trl-vllm did not run (exit {out.returncode}): {errors[-1].strip()}", flush=True)
            return None
        raise SystemExit(f"{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def print_table(rows: dict[str, dict], w: dict, peaks: dict, a: argparse.Namespace) -> None:
    print(
        f"\nGRPO step: {a.prompts} prompts x {a.group} samples, {a.tokens} tokens each (fixed), LoRA r16 "
        f"all-linear, reasonrl engine {a.engine}, {a.dtype}, model {a.model} ({w['params'] / 1e6:.1f}M params), "
        f"{a.threads} threads; "
        f"median of {rows[next(iter(rows))]['steps_measured']} steady steps"
    )
    print(
        f"measured peaks: matmul {peaks['matmul_flops'] / 1e9:.0f} GFLOP/s ({a.dtype}), copy bandwidth "
        f"{peaks['bandwidth'] / 1e9:.1f} GB/s"
    )
    fields = [
        ("s_step", "s/step", "{:.2f}"),
        ("s_generate", "generate s", "{:.2f}"),
        ("s_score", "score s", "{:.2f}"),
        ("s_update", "update s", "{:.2f}"),
        ("gen_tok_s", "gen tok/s", "{:.0f}"),
        ("train_tok_s", "train tok/s", "{:.0f}"),
        ("peak_rss_gb", "peak RSS GB", "{:.2f}"),
        *([("peak_gpu_gb", "peak GPU GB", "{:.2f}")] if a.device.startswith("cuda") else []),
        ("mfu_generate", "MFU gen", "{:.1%}"),
        ("mfu_update", "MFU update", "{:.1%}"),
        ("gen_vs_bandwidth_bound", "gen / BW bound", "{:.1%}"),
    ]
    names = list(rows)
    others = [n for n in names if n != "reasonrl"] if "reasonrl" in names else []
    print(f"{'':16}" + "".join(f"{n:>12}" for n in names) + "".join(f"{'reasonrl/' + o:>18}" for o in others))
    for key, label, fmt in fields:
        cells = "".join(f"{fmt.format(rows[n][key]):>12}" for n in names)
        ratios = "".join(
            f"{rows['reasonrl'][key] / rows[o][key]:>18.2f}" if rows[o][key] else f"{'':>18}" for o in others
        )
        print(f"{label:16}{cells}{ratios}")
    for other in names[1:]:
        print(f"steps per second, reasonrl / {other}: {rows[other]['s_step'] / rows['reasonrl']['s_step']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled", help="bundled, or shape:qwen2.5-0.5b / shape:qwen2.5-1.5b")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--which", default="both", help="sides, comma-separated: reasonrl, trl, trl-vllm ('both': reasonrl,trl)"
    )
    p.add_argument("--engine", default="hf", choices=["hf", "vllm"], help="reasonrl's rollout engine")
    p.add_argument(
        "--reasonrl-python",
        help="interpreter of the reasonrl side (default: this one; with --engine vllm, .venv-vllm's when it exists)",
    )
    p.add_argument("--trl-vllm-python", help="interpreter of the trl-vllm side (default: .venv-vllm's)")
    p.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="TRL's default is on; off by default here so both compute the same thing (see docs)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the sides this many times, alternating which goes first (machine drift cancels); "
        "the table pools every round's steady steps",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--side", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.side:
        print(json.dumps((run_reasonrl if a.side == "reasonrl" else run_trl)(a)), flush=True)
        return
    peaks, w = hardware_peaks(a.dtype, a.threads, a.device), work(a)
    names = ["reasonrl", "trl"] if a.which == "both" else a.which.split(",")
    if unknown := set(names) - {"reasonrl", "trl", "trl-vllm"}:
        raise SystemExit(f"--which: unknown side(s) {', '.join(sorted(unknown))}; use reasonrl, trl, trl-vllm")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(a.rounds):
        for n in list(names if r % 2 == 0 else names[::-1]):
            if n in names and (result := side(n, a)) is not None:
                runs[n].append(result)
            elif n in names:
                names.remove(n)
    if not names:
        raise SystemExit("no side ran")
    rows = {n: summarise(n, pooled(runs[n], a.warmup), w, peaks, a, skip=0) for n in names}
    print_table(rows, w, peaks, a)
    seconds = {n: [summarise(n, run, w, peaks, a)["s_step"] for run in runs[n]] for n in names}
    for other in (n for n in names if n != "reasonrl" and "reasonrl" in names and a.rounds > 1):
        print(
            f"per round, reasonrl / {other} steps per second: "
            + ", ".join(f"{t / r:.2f}x" for r, t in zip(seconds["reasonrl"], seconds[other]))
        )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"args": vars(a), "peaks": peaks, "work": w, "results": rows, "s_step_per_round": seconds}, indent=1
            )
        )


if __name__ == "__main__":
    main()
