"""The real default model end to end: the bundled SmolLM2-135M-Instruct (converted from GGUF) trains one step
with LoRA and its base weights stay untouched."""

import hashlib
import json

import pytest
from safetensors import safe_open

from reasonrl.config import load_config
from reasonrl.model_files import bundled_model_dir
from reasonrl.train import train


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.safetensors"))}


@pytest.mark.slow
def test_bundled_model_trains_one_step(tmp_path):
    base_files = digest(bundled_model_dir())
    cfg = load_config(
        "recipes/quickstart.yaml",
        [
            f"output_dir={tmp_path}",
            "steps=1",
            "prompts_per_step=2",
            "samples_per_prompt=2",
            "sampling.max_new_tokens=12",
            "eval.size=2",
            "eval.samples=1",
            "task.eval_size=2",
            "algo.kl.coef=0.01",
        ],
    )
    run_dir = train(cfg, quiet=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert rows[1]["loss/kl"] >= 0 and rows[1]["loss/sampler_logp_diff"] < 0.5
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert digest(bundled_model_dir()) == base_files and base_files, "the base model's files changed"
    with safe_open(str(run_dir / "adapter" / "adapter_model.safetensors"), "pt") as adapter:
        names = list(adapter.keys())
    assert names and all("lora_" in name for name in names), [n for n in names if "lora_" not in n][:3]
