#!/usr/bin/env bash
# Step-time overhead of PPO's critic (algo.advantage=gae) relative to GRPO on the bundled model (recipes/add_sub.yaml).
#
#     bench/critic_overhead.sh [STEPS [OVERRIDES...]]   (default 10 steps each; about 2 x 10 x 20 s on 2 CPU cores)
#
# Both runs use recipes/add_sub.yaml unchanged except algo.advantage, so the only difference is the critic:
# its forward pass for the values before the update and its training step after it. Steps 2..N are averaged
# (step 1 includes warm-up). Eval is cut to one problem. Prints time/step, time/update and time/generate per run
# and the ratio gae / grpo.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10}
shift || true
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/bench_critic}
COMMON=(steps="$STEPS" save_every=100000 log_rollouts_every=0 eval.size=1 eval.samples=1 output_dir="$OUT")
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for adv in grpo gae; do
  "$PY" -m reasonrl.cli train recipes/add_sub.yaml name="$adv" algo.advantage="$adv" "${COMMON[@]}" "$@" \
    --overwrite --quiet >/dev/null
done
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

def mean_times(run: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] >= 2]
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("time/step", "time/update", "time/generate")}

out = Path(sys.argv[1])
grpo, gae = mean_times(out / "grpo"), mean_times(out / "gae")
print(f"{'':8}{'time/step':>12}{'time/update':>13}{'time/generate':>15}")
for name, t in (("grpo", grpo), ("gae", gae)):
    print(f"{name:8}{t['time/step']:>11.2f}s{t['time/update']:>12.2f}s{t['time/generate']:>14.2f}s")
print(f"critic overhead: step x{gae['time/step'] / grpo['time/step']:.2f} "
      f"(+{gae['time/step'] - grpo['time/step']:.2f} s), update x{gae['time/update'] / grpo['time/update']:.2f}")
PY
