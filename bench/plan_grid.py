"""The memory plan against measurement: predicted and measured peak memory of generation and of the update,
over a grid of models, dtypes, micro-batches and lengths; one step each, every point in its own process.

    .venv/bin/python bench/plan_grid.py                  # the CPU grid (peak RSS), about 10 minutes on 2 cores
    .venv/bin/python bench/plan_grid.py --quick          # three points
    .venv/bin/python bench/plan_grid.py --device cuda    # on a GPU (torch.cuda.max_memory_allocated)
    .venv/bin/python bench/plan_grid.py --json out.json  # also every number as JSON

Each point trains one GRPO step of the quickstart's task with completions of a fixed length (EOS suppressed
until the limit) and reads the phase peaks the trainer logs (memory/generate_gb, memory/update_gb: peak RSS on a
CPU, reset per phase; peak allocation on a GPU). Models: the tiny test model, the bundled SmolLM2-135M, and
random-weight models with the shipped shapes of larger ones (shape:qwen2.5-0.5b: the real vocabulary, layers
and heads; a byte tokenizer, so prompts are longer in tokens than with the real one). The plan gets the same
config and the same prompt length the run sees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASK = [
    "task.name=reasoning_gym:basic_arithmetic",
    "task.options={min_terms: 2, max_terms: 2, min_digits: 1, max_digits: 1, operators: ['+', '-']}",
    "task.train_size=64",
    "task.eval_size=8",
]
GRID = [  # (model, dtype, prompts x samples, completion tokens, micro-batch rows, gradient checkpointing)
    ("tiny:llama", "float32", (2, 8), 64, 16, False),
    ("bundled", "float32", (2, 8), 64, 16, False),
    ("bundled", "float32", (4, 8), 64, 16, False),
    ("bundled", "float32", (2, 8), 256, 16, False),
    ("bundled", "float32", (4, 8), 128, 32, False),
    ("bundled", "float32", (4, 8), 128, 32, True),
    ("bundled", "float32", (8, 8), 64, 8, False),
    ("shape:qwen2.5-0.5b", "float32", (2, 4), 32, 8, False),
    ("shape:qwen2.5-0.5b", "bfloat16", (2, 4), 32, 8, False),
    ("shape:qwen2.5-1.5b", "bfloat16", (1, 4), 16, 4, False),
]
QUICK = [GRID[0], GRID[1], GRID[7]]
GPU_GRID = [  # bf16 on one GPU: larger batches and lengths, models up to 1.7B
    ("bundled", "bfloat16", (4, 8), 256, 32, False),
    ("bundled", "bfloat16", (8, 8), 512, 16, False),
    ("shape:qwen2.5-0.5b", "bfloat16", (8, 8), 256, 16, False),
    ("shape:qwen2.5-1.5b", "bfloat16", (8, 8), 512, 8, False),
    ("shape:qwen2.5-1.5b", "bfloat16", (8, 8), 512, 16, True),
    ("shape:qwen3-1.7b", "bfloat16", (4, 8), 512, 8, False),
]


def model_path(name: str, dtype: str) -> str:
    """A model.path for a grid name: random-weight models are built once from the shipped shapes and kept."""
    if name == "bundled":
        return "bundled:smollm2-135m-instruct"
    if not name.startswith("shape:"):
        return name
    key = name.removeprefix("shape:")
    from reasonrl.model_files import cache_dir

    path = cache_dir() / "shapes" / f"{key}-{dtype}"
    if (path / "config.json").is_file():
        return str(path)
    import torch
    from transformers import AutoModelForCausalLM

    from reasonrl.model_files import save_model_dir
    from reasonrl.plan.table import hf_config
    from reasonrl.tokenizer import ByteTokenizer

    config = hf_config(key, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    print(f"building a random {key} in {dtype} at {path} ...", file=sys.stderr, flush=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    tmp = path.with_name(path.name + ".tmp")
    save_model_dir(model, ByteTokenizer(), tmp)
    tmp.rename(path)
    return str(path)


def overrides(point: tuple, device: str, threads: int) -> list[str]:
    name, dtype, (prompts, samples), new, rows, gc = point
    return [
        f"model.path={model_path(name, dtype)}",
        f"model.dtype={dtype}",
        f"model.device={device}",
        f"model.gradient_checkpointing={str(gc).lower()}",
        f"prompts_per_step={prompts}",
        f"samples_per_prompt={samples}",
        f"sampling.max_new_tokens={new}",
        f"sampling.min_new_tokens={new}",
        f"optim.micro_batch_size={rows}",
        "optim.micro_batch_tokens=null",
        "engine.verify=off",
        f"threads={threads}",
        "memory_check=off",
        *TASK,
    ]


def measure(args: list[str]) -> dict[str, float]:
    """One step in this process: the phase peaks as the trainer's loop measures them."""
    from reasonrl.config import load_config
    from reasonrl.roles import Learner, RolloutWorker
    from reasonrl.tasks import load_task
    from reasonrl.types import collate
    from reasonrl.utils.host import configure_host
    from reasonrl.utils.memory import PhasePeaks

    cfg = load_config(None, args)
    configure_host(cfg.threads, cfg.keeps_freed_memory)
    task = load_task(cfg.task)
    learner = Learner(cfg)
    worker = RolloutWorker(cfg, learner.tokenizer, task.train, shared=learner.policy)
    try:
        worker.update_weights(learner.weights(device=None))
        peaks = PhasePeaks(cfg.model.device)
        started = time.time()
        peaks.start()
        collected, _ = worker.sample(0)
        generate = peaks.peak_gb()
        batch = collate([t for g in collected.groups for t in g], worker.pad_id, cfg.samples_per_prompt)
        peaks.start()
        learner.step(batch)
        update = peaks.peak_gb()
        return {"generate": generate, "update": update, "seconds": time.time() - started}
    finally:
        worker.close()


def predict(args: list[str], device: str) -> dict[str, float]:
    from reasonrl.config import load_config
    from reasonrl.plan import GiB, plan_for

    cfg = load_config(None, args)
    plan = plan_for(cfg, "cpu:1000" if device == "cpu" else "cuda:1000")
    # on a GPU the measure is torch's allocations: the CUDA context is outside them
    outside = sum(p.bytes for p in plan.parts if p.name == "process") if device != "cpu" else 0
    return {
        "generate": (plan.phase_peak("generate") - outside) / GiB,
        "update": (plan.phase_peak("update") - outside) / GiB,
        "prompt": plan.lengths["prompt"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the grid's numbers here")
    parser.add_argument("--only", help="comma-separated indices of the grid's points (0-based)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every point")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: measure one point (JSON list of overrides)
    args = parser.parse_args()
    if args.point:
        print("RESULT " + json.dumps(measure(json.loads(args.point))), flush=True)
        return
    rows = []
    header = (
        f"{'model':20}{'dtype':>9}{'batch':>7}{'len':>9}{'mb':>4}{'gc':>4}  {'generate GiB':>21}  {'update GiB':>21}"
    )
    print(header + "\n" + f"{'':62}{'plan  meas  err':>21}  {'plan  meas  err':>21}", flush=True)
    grid = GRID if args.device == "cpu" else GPU_GRID
    if args.only:
        grid = [grid[int(i)] for i in args.only.split(",")]
    for point in grid[:3] if args.quick else grid:
        point_args = overrides(point, args.device, args.threads) + list(args.set)
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        out = subprocess.run(
            [sys.executable, __file__, "--point", json.dumps(point_args)], capture_output=True, text=True, env=env
        )
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not lines:
            print(f"{point[0]}: failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        measured = json.loads(lines[-1].removeprefix("RESULT "))
        planned = predict(point_args, args.device)
        name, dtype, (prompts, samples), new, mb, gc = point
        row = {
            "model": name,
            "dtype": dtype,
            "batch": prompts * samples,
            "prompt": planned["prompt"],
            "completion": new,
            "micro_batch": mb,
            "checkpointing": gc,
            "planned": planned,
            "measured": measured,
        }
        rows.append(row)
        cells = []
        for phase in ("generate", "update"):
            p, m = planned[phase], measured[phase]
            cells.append(f"{p:6.2f}{m:6.2f}{(p - m) / m:+8.1%}")
        print(
            f"{name:20}{dtype:>9}{prompts * samples:>7}{planned['prompt']:>5}+{new:<3}{mb:>4}"
            f"{'yes' if gc else 'no':>4}  " + "  ".join(cells),
            flush=True,
        )
    errors = [abs(r["planned"][p] - r["measured"][p]) / r["measured"][p] for r in rows for p in ("generate", "update")]
    if errors:
        print(f"\n{len(rows)} points: mean |error| {sum(errors) / len(errors):.1%}, largest {max(errors):.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "points": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
