"""The learning tests' scenarios, shared by tests/e2e, tests/unit/test_vllm_engine.py and
scripts/learning_margins.py.

Each scenario trains once and returns the numbers its test asserts on; `check` says whether they pass. A threshold
must hold for the property, not for one machine's random stream, so each was set against 5 seeds (data order and
sampling) x torch threads 1 and 2 with `python scripts/learning_margins.py`, which prints every scenario's smallest
margin over its threshold. Measured on a 2-core AMD EPYC (2026-12-06), smallest value over the 10 runs:
    toy task, every advantage, loss, grpo_process, dapo (30 steps)   gain >= 0.506   threshold 0.25
    corridor, gigpo and grpo (60 steps; at 40, grpo seed 0 gave 0.128)  gain >= 0.472   threshold 0.25
    pipeline (sft 300 steps, rl 60; at 150/40 seed 1 gave sft +0.06)   sft gain >= 0.51   threshold 0.30
                                                  rl fixes >= 0.30 of sft's errors   threshold 0.15
    vllm engine, toy task (tiny model with head_dim 32, 30 steps)   gain >= 0.712   threshold 0.25
(pipeline: threads 2 for seeds 0 and 1 on this recipe, identical to threads 1; all 5 seeds on the shorter one.)
On this tiny model the thread count changed no number except for losses with two mini-batches (by < 0.01).
Each Scenario's `noise` says what the threshold has to clear.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import TOY_REWARD, tiny_config

# gspo clips a sequence-level ratio; it needs the sequence-mean aggregation to be a valid config
EXTRA = {"gspo": ["algo.aggregation=seq-mean-token-mean"]}


def _rewards(run_dir: Path, key: str = "rollout/reward") -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if r["step"] > 0]


def first_last(values: list[float], window: int) -> dict[str, float]:
    first, last = sum(values[:window]) / window, sum(values[-window:]) / window
    return {"first": first, "last": last, "gain": last - first}


def toy_curve(tmp_path: Path, *overrides: str, steps: int = 30) -> dict[str, float]:
    """GRPO + LoRA on the toy digits task (tests/toy_rewards.py): mean reward of the first and last 5 steps."""
    from reasonrl.train import train

    cfg = tiny_config(
        tmp_path,
        f"steps={steps}",
        "save_every=1000",
        "log_rollouts_every=0",
        "prompts_per_step=4",
        "samples_per_prompt=8",
        "optim.micro_batch_size=32",
        *overrides,
    )
    return first_last(_rewards(train(cfg, quiet=True)), 5)


def corridor_curve(tmp_path: Path, *overrides: str) -> dict[str, float]:
    """Multi-turn: walks to a goal in at most 4 turns, one character a turn; success of the first/last 5 steps."""
    from reasonrl.train import train

    cfg = tiny_config(
        tmp_path,
        "env.name=corridor",
        "task.name=corridor",
        "task.path=null",
        "task.eval_size=12",
        "sampling.max_new_tokens=1",
        "save_every=1000",
        "log_rollouts_every=0",
        "prompts_per_step=8",
        "samples_per_prompt=8",
        "optim.micro_batch_size=64",
        "optim.lr=0.005",
        "algo.gamma=0.95",
        *overrides,
    )
    return first_last(_rewards(train(cfg, quiet=True)), 5)


def learnable_tiny_model(tmp_path: Path) -> Path:
    """A tiny random Llama whose heads vLLM's CPU attention supports (head_dim 32; tiny:llama's 8 is not), saved
    as a model directory."""
    from reasonrl.model_files import save_model_dir, tiny_model
    from reasonrl.tokenizer import ByteTokenizer

    model = tiny_model(vocab_size=ByteTokenizer.vocab_size, hidden_size=64, heads=2)
    save_model_dir(model, ByteTokenizer(), tmp_path / "tiny64")
    return tmp_path / "tiny64"


def vllm_toy_curve(tmp_path: Path, *overrides: str) -> dict[str, float]:
    """toy_curve with the vllm engine (needs vLLM: .venv-vllm)."""
    return toy_curve(tmp_path, f"model.path={learnable_tiny_model(tmp_path)}", "engine.name=vllm", *overrides)


def pipeline_accuracies(tmp_path: Path, *overrides: str) -> dict[str, float]:
    """recipes/pipeline_tiny.yaml: greedy accuracy after pretraining, SFT and RL, and the paired CI lows."""
    from reasonrl.config import load_config
    from reasonrl.pipeline import pipeline

    recipe = Path(__file__).parents[1] / "recipes" / "pipeline_tiny.yaml"
    root = pipeline(load_config(recipe, [f"output_dir={tmp_path}", *overrides]), quiet=True)
    result = json.loads((root / "pipeline.json").read_text())
    pre, sft, rl = (s["accuracy"] for s in result["stages"])
    paired = result["paired"]
    return {
        "pretrain": pre,
        "sft": sft,
        "rl": rl,
        "sft_gain": sft - pre,
        "rl_gain": rl - sft,
        "rl_fixed": (rl - sft) / max(1.0 - sft, 1e-9),
        "sft_ci_low": paired["sft_vs_pretrain"]["ci_low"],
        "rl_ci_low": paired["rl_vs_sft"]["ci_low"],
        "rl_start": result["rl_start_accuracy"],
    }


class Scenario:
    """A learning test: what it trains (run), the number it asserts on (key) and the threshold (above)."""

    def __init__(
        self, run: Callable[..., dict[str, float]], overrides: tuple[str, ...], key: str, above: float, noise: str
    ):
        self.run, self.overrides, self.key, self.above, self.noise = run, overrides, key, above, noise

    def measure(self, tmp_path: Path, *extra: str) -> dict[str, float]:
        return self.run(tmp_path, *self.overrides, *extra)

    def margin(self, measured: dict[str, float]) -> float:
        return measured[self.key] - self.above

    def check(self, measured: dict[str, Any]) -> None:
        assert measured[self.key] > self.above, f"{self.key} {measured[self.key]:.3f} <= {self.above}: {measured}"


def _scenarios() -> dict[str, Scenario]:
    from reasonrl.algos import ADVANTAGES, POLICY_LOSSES

    toy_noise = (
        "toy task: random init gives ~0.12; a 5-step mean varies by ~0.03 within a run and the gain by "
        "0.51-0.79 across seeds"
    )
    out = {"toy_grpo": Scenario(toy_curve, (), "gain", 0.25, toy_noise)}
    for name in ADVANTAGES.names():
        out[f"advantage:{name}"] = Scenario(
            toy_curve, (f"algo.advantage={name}", *EXTRA.get(name, [])), "gain", 0.25, toy_noise
        )
    for name in POLICY_LOSSES.names():
        # two mini-batches, so the ratio leaves 1 and each loss's clipping/weighting is exercised
        out[f"loss:{name}"] = Scenario(
            toy_curve, (f"algo.loss.name={name}", "algo.mini_batches=2", *EXTRA.get(name, [])), "gain", 0.25, toy_noise
        )
    process_reward = TOY_REWARD.replace(":digits", ":digit_steps")
    out["grpo_process"] = Scenario(
        toy_curve,
        ("algo.advantage=grpo_process", f"rewards.components={{{process_reward}: 1.0}}"),
        "gain",
        0.25,
        toy_noise,
    )
    out["dapo"] = Scenario(
        toy_curve,
        (
            "algo.loss.clip_high=0.28",
            "algo.aggregation=token-mean",
            "algo.overlong.buffer=4",
            "algo.overlong.mask_truncated=true",
            "algo.dynamic_sampling.enabled=true",
            "algo.mini_batches=2",
        ),
        "gain",
        0.25,
        toy_noise,
    )
    corridor_noise = (
        "corridor: a random walk succeeds ~0.4; 5-step means of 64 episodes vary by ~0.04; a run can "
        "dip for 10 steps before it climbs, hence 60 steps"
    )
    for name in ("gigpo", "grpo"):
        out[f"corridor:{name}"] = Scenario(
            corridor_curve, (f"algo.advantage={name}", "steps=60"), "gain", 0.25, corridor_noise
        )
    out["vllm:toy_grpo"] = Scenario(vllm_toy_curve, (), "gain", 0.25, toy_noise)
    pipe_noise = (
        "200 held-out sums, greedy: a paired accuracy change has a 95% half-width of ~0.07; across seeds "
        "SFT ends anywhere from 0.57 to 0.93, so RL is judged by the share of SFT's errors it fixes"
    )
    out["pipeline:sft"] = Scenario(pipeline_accuracies, (), "sft_gain", 0.30, pipe_noise)
    out["pipeline:rl"] = Scenario(pipeline_accuracies, (), "rl_fixed", 0.15, pipe_noise)
    return out


SCENARIOS = _scenarios()
