"""`reasonrl train --check RECIPE [overrides]`: everything a run checks before its first step, without training.

    config      loaded and validated, every registry name resolved (as a run does)
    task        built; three example prompts with their reference answers
    rewards     run on each reference answer written as a model should write it ("Answer: <answer>", or the
                reference solution in a ```python block): a reference that does not score full marks on a
                reward means the task's answer format and that reward disagree
    estimate    the model loaded, one micro-batch forward and backward and a short generation timed, and from
                them the time of one step and the peak memory (no optimizer step; nothing written)

Errors come out as in a run: one line, exit 2.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any, cast

from reasonrl.config import RunConfig
from reasonrl.types import Example

SHOWN = 3


def reference_completion(example: Example) -> str | None:
    """What a correct answer to example looks like in the format the built-in rewards read; None if unknown."""
    solution = example.metadata.get("solution") if example.metadata else None
    if solution and example.metadata.get("tests") is not None:
        return f"```python\n{solution}\n```"
    if example.answer is not None and str(example.answer) != "":
        return f"Answer: {example.answer}"
    return None


def check_rewards(cfg: RunConfig, examples: list[Example], say: Any) -> None:
    """Score each example's reference completion; raise ValueError when a reward gives it less than full marks."""
    from reasonrl.rewards.compose import RewardComposer

    found = [(e, reference_completion(e)) for e in examples]
    pairs = [(e, c) for e, c in found if c is not None]
    if not pairs:
        say("rewards: these examples have no reference answer to score; skipped")
        return
    with RewardComposer(cfg.rewards) as composer:
        scored = composer.score([c for _, c in pairs], [e for e, _ in pairs])
    for name in cfg.rewards.components:
        if scored and all(s.parts.get(name, 0.0) is None for s in scored):
            raise ValueError(
                f"reward {name!r} gives no score (n/a) to any reference answer (e.g. numeric on answers "
                f"that are not numbers, such as {pairs[0][0].answer!r}): it would never reward anything; "
                "check rewards.components against the task's answers"
            )
    for (example, completion), result in zip(pairs, scored):
        parts = ", ".join(
            f"{name} {value:.2f}" if value is not None else f"{name} n/a" for name, value in result.parts.items()
        )
        say(f"  {example.id}: {parts}" + (f"  errors: {'; '.join(result.errors)}" if result.errors else ""))
        low = [
            name
            for name, value in result.parts.items()
            if value is not None and value < 1.0 and name in ("correct", "numeric", "code_tests", "format")
        ]
        if result.errors or low:
            what = f"errors ({'; '.join(result.errors)})" if result.errors else f"{', '.join(low)} below 1"
            raise ValueError(
                f"the reference answer of example {example.id!r} scores {what}: the task's answer "
                f"format and the rewards disagree (reference: {completion[:80]!r}); check "
                "task.instruction, task.answer_field and rewards.components"
            )


def estimate(cfg: RunConfig, examples: list[Example], say: Any) -> None:
    """Time one micro-batch's forward and backward and a short generation; print a per-step estimate."""
    import torch

    from reasonrl.engine import SamplingParams
    from reasonrl.engine.hf import HFEngine
    from reasonrl.model import load_policy, policy_logprobs
    from reasonrl.tokenizer import encode_chat
    from reasonrl.utils.host import configure_host

    configure_host(cfg.threads, cfg.keeps_freed_memory)  # as a run sets it
    started = time.perf_counter()
    policy, tokenizer = load_policy(cfg.model, cfg.lora)
    say(
        f"model: {cfg.model.path} loaded in {time.perf_counter() - started:.1f} s, "
        f"{sum(p.numel() for p in policy.parameters()) / 1e6:.1f}M parameters, "
        f"{sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e6:.2f}M trained"
    )
    prompts = [encode_chat(tokenizer, e.prompt) for e in examples]
    prompts = (prompts * cfg.prompts_per_step)[: cfg.prompts_per_step]
    new_tokens = min(8, cfg.sampling.max_new_tokens)
    engine = HFEngine(policy, tokenizer, cfg.engine)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=cfg.sampling.temperature, min_new_tokens=new_tokens)
    engine.generate(prompts[:1], params, n=1, seed=0)  # warm-up
    started = time.perf_counter()
    engine.generate(prompts, params, n=cfg.samples_per_prompt, seed=0)  # the step's batch, 8 tokens
    generate = (time.perf_counter() - started) * cfg.sampling.max_new_tokens / new_tokens
    length = max(map(len, prompts)) + cfg.sampling.max_new_tokens
    rows = min(cfg.optim.micro_batch_size, cfg.batch_size)
    if cfg.optim.micro_batch_tokens:
        rows = max(1, min(rows, cfg.optim.micro_batch_tokens // length))
    timings = []
    for size in (2, rows):  # the first pass warms up
        tokens = torch.randint(
            0, cast(Callable[[], torch.nn.Embedding], policy.get_input_embeddings)().num_embeddings, (size, length)
        )
        started = time.perf_counter()
        policy_logprobs(policy, tokens, torch.ones(size, length - 1, dtype=torch.bool), None, 1.0).sum().backward()
        timings.append(time.perf_counter() - started)
        policy.zero_grad(set_to_none=True)
    fwd_bwd = timings[-1]
    micro_batches = -(-cfg.batch_size // rows) * cfg.algo.epochs
    update = fwd_bwd * micro_batches * (1.3 if cfg.algo.kl.coef else 1.0)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    say(
        f"estimate per step, every completion at its {cfg.sampling.max_new_tokens}-token limit (an upper bound): "
        f"generate ~{generate:.0f} s ({cfg.prompts_per_step} x {cfg.samples_per_prompt} samples), update "
        f"~{update:.0f} s ({micro_batches} micro-batches of {rows} x {length} tokens at {fwd_bwd:.1f} s each); "
        f"{cfg.steps} steps ~{(generate + update) * cfg.steps / 60:.0f} min plus evaluations"
    )
    from reasonrl.plan import gb, plan_for

    plan = plan_for(cfg)
    say(
        f"memory: the plan's peak is {gb(plan.peak)} GiB ({plan.peak_phase}) of {gb(plan.device.capacity)} GiB free, "
        f"{'fits' if plan.fits else 'does NOT fit'} (`reasonrl plan` has the parts); this check's one micro-batch "
        f"peaked at {peak_gb:.1f} GiB RSS"
    )


def check(cfg: RunConfig, say: Any = print, with_estimate: bool = True) -> None:
    """Everything a run checks before its first step (config, task, rewards), then the estimate."""
    from reasonrl.tasks import load_task

    say(
        f"config: ok ({cfg.name}: {cfg.algo.advantage} + {cfg.algo.loss.name}, task {cfg.task.name}, "
        f"rewards {', '.join(cfg.rewards.components)})"
    )
    task = load_task(cfg.task)
    say(f"task: {len(task.train)} train and {len(task.eval)} held-out problems; {SHOWN} of them:")
    shown = task.train[:SHOWN]
    for example in shown:
        question = example.prompt[-1]["content"] if isinstance(example.prompt, list) else str(example.prompt)
        tests = (example.metadata or {}).get("tests")
        expected = (
            f"answer {str(example.answer)[:80]!r}"
            if example.answer is not None
            else (
                f"{len(tests) if isinstance(tests, list) else 'its'} unit tests"
                if tests is not None
                else "no reference"
            )
        )
        say(f"  {example.id}: {question[:160]!r} -> {expected}")
    if cfg.env.name == "single_turn":
        say("rewards on the reference answers:")
        check_rewards(cfg, shown, say)
    else:
        say(f"rewards: env {cfg.env.name} scores its episodes itself; not checked here")
    if with_estimate:
        estimate(cfg, shown, say)
    say("check passed: nothing was trained or written")
