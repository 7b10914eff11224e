"""Golden runs: prove that a refactor changes no number. Records, for a few algorithms on the tiny model (5 steps,
fixed seed, CPU fp32), every per-step metric but timings and memory peaks, and a checksum of the final adapter;
`--check` reruns them and compares exactly.

    .venv/bin/python scripts/golden_run.py --record golden.json     # before the refactor
    .venv/bin/python scripts/golden_run.py --check golden.json      # after it: prints any difference, exit 1

Exact equality holds on one machine and thread count; another CPU gives other (equally valid) numbers, so
record and check on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALGORITHMS = {
    "grpo": [],
    "gae": ["algo.advantage=gae", "algo.kl.coef=0.05", "algo.kl.target=0.01", "algo.epochs=2", "algo.mini_batches=2"],
    "dapo": [
        "algo.loss.clip_high=0.28",
        "algo.aggregation=token-mean",
        "algo.overlong.buffer=4",
        "algo.overlong.mask_truncated=true",
        "algo.dynamic_sampling.enabled=true",
        "algo.mini_batches=2",
    ],
    "grpo_kl_resume": ["algo.kl.coef=0.02", "save_every=2"],
}


def adapter_checksum(path: Path) -> str:
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, tensor in sorted(load_file(str(path)).items()):
        h.update(name.encode())
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def golden(name: str, overrides: list[str], tmp: Path) -> dict:
    from reasonrl.train import train
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp, f"name={name}", "steps=5", "seed=3", "log_rollouts_every=0", *overrides)
    if name.endswith("_resume"):  # 3 steps, then a resumed run to 5
        from dataclasses import replace

        train(replace(cfg, steps=3), quiet=True)
        run_dir = train(cfg, resume=True, quiet=True)
    else:
        run_dir = train(cfg, quiet=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kept = lambda key: not key.startswith(("time/", "memory/"))  # noqa: E731
    steps = {str(r["step"]): {k: v for k, v in sorted(r.items()) if kept(k)} for r in rows}
    return {"steps": steps, "adapter": adapter_checksum(run_dir / "adapter" / "adapter_model.safetensors")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", metavar="FILE")
    group.add_argument("--check", metavar="FILE")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        got = {name: golden(name, overrides, Path(tmp)) for name, overrides in ALGORITHMS.items()}
    if args.record:
        Path(args.record).write_text(json.dumps(got, indent=1))
        for name, g in got.items():
            last = g["steps"][max(g["steps"], key=int)]
            print(
                f"{name:16} adapter {g['adapter']}  step 5: reward {last['rollout/reward']:.6f} "
                f"loss/pg {last.get('loss/pg', float('nan')):.6f} grad_norm {last.get('optim/grad_norm', 0):.6f}"
            )
        return
    want = json.loads(Path(args.check).read_text())
    bad = 0
    for name, g in want.items():
        for step, metrics in g["steps"].items():
            for key, value in metrics.items():
                other = got[name]["steps"].get(step, {}).get(key)
                if other != value:
                    bad += 1
                    print(f"{name} step {step} {key}: recorded {value!r}, now {other!r}")
            extra = set(got[name]["steps"].get(step, {})) - set(metrics)
            if extra:
                print(f"{name} step {step}: new metrics {sorted(extra)} (not compared)")
        if got[name]["adapter"] != g["adapter"]:
            bad += 1
            print(f"{name}: adapter checksum recorded {g['adapter']}, now {got[name]['adapter']}")
    print("identical" if not bad else f"{bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
