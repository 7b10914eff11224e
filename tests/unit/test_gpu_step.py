"""On a CUDA device (marked gpu; bench/gpu.sh runs them): one training step agrees with the CPU's, and the memory
plan's update peak holds against torch.cuda.max_memory_allocated."""

from __future__ import annotations

import pytest
import torch

from reasonrl.config import load_config

pytestmark = pytest.mark.gpu

TINY = [
    "model.path=tiny:llama",
    "task.name=arithmetic",
    "prompts_per_step=2",
    "samples_per_prompt=4",
    "seed=3",
    "optim.warmup_steps=0",
]


def one_step(device: str, dtype: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The rollouts are sampled on the CPU (the same completions for both); only the update runs on `device`."""
    from reasonrl.roles import Learner, RolloutWorker
    from reasonrl.tasks import load_task
    from reasonrl.types import collate

    cpu = load_config(None, [*TINY, "model.dtype=float32", "engine.verify=off"])
    task = load_task(cpu.task)
    sampler = Learner(cpu)
    worker = RolloutWorker(cpu, sampler.tokenizer, task.train, shared=sampler.policy)
    try:
        worker.update_weights(sampler.weights(device=None))
        collected, _ = worker.sample(0)
    finally:
        worker.close()
    cfg = load_config(None, [*TINY, f"model.device={device}", f"model.dtype={dtype}", "engine.verify=off"])
    learner = Learner(cfg)
    batch = collate([t for g in collected.groups for t in g], worker.pad_id, cfg.samples_per_prompt)
    batch.rewards = (torch.arange(batch.size) % 3).float()  # the tiny model solves nothing: spread the rewards
    before = {n: p.detach().float().cpu().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    metrics = learner.step(batch)
    adapter = {n: p.detach().float().cpu().clone() for n, p in learner.policy.named_parameters() if p.requires_grad}
    assert max((adapter[n] - before[n]).abs().max().item() for n in before) > 0, metrics  # the step moved it
    return metrics, adapter


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-4), ("bfloat16", 5e-2)])
def test_a_cuda_step_agrees_with_the_cpu_step(dtype: str, tolerance: float) -> None:
    cpu_metrics, cpu_adapter = one_step("cpu", "float32")
    gpu_metrics, gpu_adapter = one_step("cuda", dtype)
    assert gpu_metrics["loss/pg"] == pytest.approx(cpu_metrics["loss/pg"], abs=tolerance)
    for name, value in cpu_adapter.items():
        change = (gpu_adapter[name] - value).abs().max().item()
        assert change <= tolerance * max(1.0, value.abs().max().item()), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_plan_holds_against_max_memory_allocated() -> None:
    """The bundled model's update on the GPU: predicted peak (without the CUDA context) within 15% of measured."""
    from reasonrl.plan import GiB, plan_for
    from reasonrl.roles import Learner, RolloutWorker
    from reasonrl.tasks import load_task
    from reasonrl.types import collate

    overrides = [
        "model.device=cuda",
        "model.dtype=bfloat16",
        "task.name=reasoning_gym:basic_arithmetic",
        "prompts_per_step=4",
        "samples_per_prompt=8",
        "sampling.max_new_tokens=128",
        "sampling.min_new_tokens=128",
        "engine.verify=off",
    ]
    cfg = load_config(None, overrides)
    plan = plan_for(cfg, "cuda")
    learner = Learner(cfg)
    worker = RolloutWorker(cfg, learner.tokenizer, load_task(cfg.task).train, shared=learner.policy)
    try:
        worker.update_weights(learner.weights(device=None))
        collected, _ = worker.sample(0)
        batch = collate([t for g in collected.groups for t in g], worker.pad_id, cfg.samples_per_prompt)
        torch.cuda.reset_peak_memory_stats()
        learner.step(batch)
        measured = torch.cuda.max_memory_allocated() / GiB
    finally:
        worker.close()
    context = next(p.bytes for p in plan.parts if p.name == "process") / GiB
    predicted = plan.phase_peak("update") / GiB - context
    assert predicted == pytest.approx(measured, rel=0.15), (predicted, measured)
