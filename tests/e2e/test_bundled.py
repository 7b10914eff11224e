"""The real default model end to end: the bundled SmolLM2-135M-Instruct (converted from GGUF) trains one step
with LoRA and its base weights stay untouched."""
import json

import pytest

from reasonrl.config import load_config
from reasonrl.train import train


@pytest.mark.slow
def test_bundled_model_trains_one_step(tmp_path):
    cfg = load_config("recipes/quickstart.yaml", [
        f"output_dir={tmp_path}", "steps=1", "prompts_per_step=2", "samples_per_prompt=2",
        "sampling.max_new_tokens=12", "eval.size=2", "eval.samples=1", "task.eval_size=2", "algo.kl.coef=0.01"])
    run_dir = train(cfg, quiet=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert rows[1]["loss/kl"] >= 0 and rows[1]["loss/sampler_logp_diff"] < 0.5
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
