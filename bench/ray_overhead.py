"""What placement=ray costs on one machine: seconds per step of the same recipe run locally and on a local Ray
cluster with 1 and 2 rollout workers (and 2 learners), and the size and broadcast time of a weight update
(LoRA and full weights of the bundled model) through Ray's object store.

    .venv/bin/python bench/ray_overhead.py              # the bundled model, 6 steps per configuration
    .venv/bin/python bench/ray_overhead.py --quick      # the tiny test model
    .venv/bin/python bench/ray_overhead.py --gpus 4     # a multi-GPU machine: 2 workers + 2 learners on GPUs

Each configuration runs `reasonrl train` in its own process with fixed-length completions (EOS suppressed until
the limit) and reads time/step, time/generate and time/update from metrics.jsonl (median of the steps after the
first); start-up (cluster, actors, model loads) is reported apart. Ratios are against the local run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMON = [
    "eval.before=skip",
    "eval.size=2",
    "eval.samples=1",
    "eval.greedy=false",
    "log.report=false",
    "sampling.min_new_tokens=32",
    "sampling.max_new_tokens=32",
    "engine.verify=off",
]
CONFIGS = {  # name: overrides
    "local": [],
    "ray 1 worker, 1 learner": ["placement.name=ray"],
    "ray 2 workers, 1 learner": ["placement.name=ray", "placement.rollout_workers=2"],
    "ray 2 workers, 2 learners": ["placement.name=ray", "placement.rollout_workers=2", "placement.learners=2"],
    "ray 1 + 1, 2 CPUs each": ["placement.name=ray", "placement.cpus_per_actor=2"],
    "ray 2 + 2, max_staleness=1": [
        "placement.name=ray",
        "placement.rollout_workers=2",
        "placement.learners=2",
        "algo.max_staleness=1",
    ],
}


def run(recipe: str, overrides: list[str], out: Path) -> dict[str, float]:
    t0 = time.time()
    args = ["train", recipe, f"output_dir={out}", "name=bench", *COMMON, *overrides, "--quiet"]
    done = subprocess.run([sys.executable, "-m", "reasonrl.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{overrides}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    rows = [json.loads(x) for x in (out / "bench" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] > 1 and "time/step" in r]
    med = {k: statistics.median(r[k] for r in rows) for k in ("time/step", "time/generate", "time/update")}
    return med | {"wall": time.time() - t0, "steady": sum(r["time/step"] for r in rows)}


def broadcast(model: str, workers: int) -> dict[str, dict[str, float]]:
    """Bytes of a WeightUpdate and seconds to put it in the object store and have `workers` actors fetch it."""
    import ray
    import torch

    from reasonrl.config import LoraConfig, ModelConfig
    from reasonrl.model import load_policy
    from reasonrl.weights import weights_of

    @ray.remote(num_cpus=0)
    class Receiver:
        def take(self, update: object) -> int:
            return update.nbytes()  # type: ignore[attr-defined]

    ray.init(include_dashboard=False, log_to_driver=False)
    receivers = [Receiver.remote() for _ in range(workers)]  # type: ignore[attr-defined]
    ray.get([r.take.remote(weights_of(torch.nn.Linear(1, 1), 0, "cpu")) for r in receivers])  # warm
    out = {}
    for lora in (True, False):
        policy, _ = load_policy(ModelConfig(path=model, dtype="float32"), LoraConfig(enabled=lora))
        update = weights_of(policy, 1, "cpu")
        times = []
        for _ in range(3):
            t0 = time.time()
            ref = ray.put(update)
            size = ray.get([r.take.remote(ref) for r in receivers])[0]
            times.append(time.time() - t0)
        out["lora" if lora else "full"] = {"mb": size / 2**20, "s": min(times)}
    ray.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny test model (a smoke test of the script)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--gpus", type=int, default=0, help="GPUs on this machine (ray actors ask for one each)")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--only", nargs="*", help="configuration names to run (local always runs)")
    args = parser.parse_args()
    recipe = str(ROOT / "recipes" / "add_sub.yaml")
    extra = [f"steps={args.steps}", "save_every=1000"]
    if args.quick:
        extra += ["model.path=tiny:llama", "model.dtype=float32"]
    if args.gpus:
        extra += ["model.device=cuda"]
    results = {}
    for name, overrides in CONFIGS.items():
        if (args.gpus and "2 learners" in name and args.gpus < 4) or (args.only and name not in ["local", *args.only]):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = run(recipe, extra + overrides, Path(tmp))
        r = results[name]
        print(
            f"{name:28} {r['time/step']:6.2f} s/step (generate {r['time/generate']:.2f}, update "
            f"{r['time/update']:.2f})  x{r['time/step'] / results['local']['time/step']:.2f}  "
            f"start-up and evaluation {r['wall'] - r['steady']:.0f} s",
            flush=True,
        )
    sizes = broadcast("tiny:llama" if args.quick else "bundled:smollm2-135m-instruct", 2)
    for kind, r in sizes.items():
        print(f"weight update {kind:4}: {r['mb']:7.1f} MB, put + fetched by 2 actors in {r['s'] * 1000:.0f} ms")
    if args.json:
        args.json.write_text(json.dumps({"steps": results, "broadcast": sizes}, indent=1))


if __name__ == "__main__":
    main()
