"""Every learning test over several seeds and torch thread counts: the measured numbers, each scenario's
threshold and its smallest margin over it. A learning test must hold for the property on any machine, so its
threshold is set from this table (run it on each kind of CPU you have), not from one lucky stream.

    .venv/bin/python scripts/learning_margins.py                       # all scenarios, seeds 0-4, threads 1 and 2
    .venv/bin/python scripts/learning_margins.py --only corridor --seeds 0,1,2,3,4,5,6,7 --out corridor.jsonl

Each training runs in its own process (two at a time), and every result is appended to --out as it arrives, so
an interrupted sweep continues where it stopped when started again with the same --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(name: str, seed: int, threads: int) -> dict:
    from tests.learning import SCENARIOS

    with tempfile.TemporaryDirectory() as tmp:
        return SCENARIOS[name].measure(Path(tmp), f"seed={seed}", f"threads={threads}")


def job_key(name: str) -> str:
    """Scenarios that train the same thing (the pipeline's two checks) share one training."""
    from tests.learning import SCENARIOS

    s = SCENARIOS[name]
    return f"{s.run.__name__}{list(s.overrides)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated substrings of scenario names")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once")
    p.add_argument("--out", default="learning_margins.jsonl")
    p.add_argument("--one", nargs=3, metavar=("NAME", "SEED", "THREADS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        name, seed, threads = args.one
        print(json.dumps(run_one(name, int(seed), int(threads))))
        return

    from tests.learning import SCENARIOS

    wanted = [n for n in SCENARIOS if not args.only or any(s in n for s in args.only.split(","))]
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    out = Path(args.out)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[(row["job"], row["seed"], row["threads"])] = row["measured"]
    jobs = {}
    for name in wanted:
        jobs.setdefault(job_key(name), name)
    todo = [(key, name, s, t) for key, name in jobs.items() for s in seeds for t in threads if (key, s, t) not in done]
    print(
        f"{len(wanted)} scenarios, {len(jobs)} trainings x {len(seeds)} seeds x {len(threads)} thread counts; "
        f"{len(todo)} to run",
        flush=True,
    )

    def run(job: tuple[str, str, int, int]) -> None:
        key, name, seed, nthreads = job
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, str(seed), str(nthreads)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(f"{name} seed {seed} threads {nthreads}: failed\n{proc.stderr[-2000:]}", flush=True)
            return
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        done[(key, seed, nthreads)] = measured
        with out.open("a") as f:
            f.write(json.dumps({"job": key, "seed": seed, "threads": nthreads, "measured": measured}) + "\n")
        print(
            f"{name:28} seed {seed} threads {nthreads}: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()),
            flush=True,
        )

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, todo))

    print(f"\n{'scenario':28}{'asserts':>22}{'n':>4}{'min':>8}{'mean':>8}{'max':>8}{'min margin':>12}")
    for name in wanted:
        s = SCENARIOS[name]
        rows = [done[(job_key(name), seed, t)] for seed in seeds for t in threads if (job_key(name), seed, t) in done]
        if not rows:
            continue
        values = [r[s.key] for r in rows]
        print(
            f"{name:28}{s.key + ' > ' + format(s.above, 'g'):>22}{len(values):>4}{min(values):>8.3f}"
            f"{sum(values) / len(values):>8.3f}{max(values):>8.3f}{min(values) - s.above:>+12.3f}"
        )


if __name__ == "__main__":
    main()
