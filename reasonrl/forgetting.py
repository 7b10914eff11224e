"""Forgetting monitor: what a run loses while it learns, measured at step 0 and at every evaluation.

Retention, logged as forget/<suite>/value and forget/<suite>/delta (value minus its step-0 value; higher is
better for every suite, so a negative delta is forgetting): accuracy on held-out tasks the run does not train
on (forget.tasks), and `text`, the mean log-likelihood per token (nats) of held-out general English
(reasonrl/data/general_text.txt, or forget.text).

RL's Razor (Shenfeld, Pari, Agrawal, arXiv:2509.04259): forgetting tracks the forward KL from the base to the
policy on the new task's prompts,
    KL(base || policy) = E_x E_{y ~ base(.|x)} [log base(y|x) - log policy(y|x)]      (nats per completion),
estimated on kl_prompts x kl_samples base completions drawn once and reused, so the curve is comparable
across steps; the reverse KL(policy || base) uses the policy's own completions (the same seed every time).
Each is logged two ways with the same expectation: `_k1` sums the sampled log-ratio over the completion's
tokens; the plain name sums, along the same completion, the exact KL of each next-token distribution (chain
rule: KL of sequences = E_y sum_t KL(p(.|y<t) || q(.|y<t))), never negative and of lower variance.
Completions end at a stop token or at sampling.max_new_tokens, so this is the KL between the distributions of
those length-capped completions, at sampling.temperature (top_p is not applied to these samples).

The base is the policy with its LoRA adapter disabled (no copy); with full fine-tuning it is a frozen copy of
the weights made when the monitor is built (one more model in memory). forget.kl_budget: past it, warn, or
(on_budget=stop) stop the run and keep as its adapter the evaluated step with the best eval accuracy among
those within budget (saved to <run>/forget_best when it is the best so far).

    monitor = make_monitor(cfg, policy, tokenizer, engine, task.eval, run_dir)  # NullMonitor when disabled
    metrics |= monitor.measure(step, evaluation)    # step 0 and every evaluation; evaluation: EvalResult dict
    if monitor.stop: ...                            # past the budget with on_budget=stop
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from torch import nn

from reasonrl.config import EnvConfig, RewardConfig, RunConfig
from reasonrl.engine import Completion, SamplingParams
from reasonrl.forgetting_measures import (
    Samples,
    mean_and_se,
    over_budget,
    pack,
    retention_metrics,
    sequence_kls,
    text_chunks,
    text_loglik,
)
from reasonrl.types import Example

log = logging.getLogger(__name__)

BEST_DIR = "forget_best"
"""The adapter of the best evaluated step within the KL budget, under the run directory (on_budget=stop)."""


# ---------------------------------------------------------------------------------------------------------
# The monitor


class NullMonitor:
    """Stands in for the monitor when forget.enabled is false: measures nothing, never stops a run."""

    stop = False

    def measure(self, step: int, evaluation: dict[str, Any] | None = None) -> dict[str, float]:
        return {}

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        return {}


class ForgettingMonitor:
    """Retention suites and the KL to the base, for one run. Built before the run starts (bad suites fail
    then, and a full fine-tune's base copy is taken before any update); the base samples are drawn and the
    step-0 retention scored at the first measure() (or restored from a checkpoint's state)."""

    def __init__(
        self,
        cfg: RunConfig,
        policy: nn.Module,
        tokenizer: Any,
        engine: Any,
        kl_examples: list[Example],
        run_dir: Path | None = None,
    ) -> None:
        from reasonrl.model import is_lora
        from reasonrl.tasks import load_task
        from reasonrl.tokenizer import encode_chat

        self.cfg, self.policy, self.tokenizer, self.engine, self.run_dir = cfg, policy, tokenizer, engine, run_dir
        forget = cfg.forget
        self.suites = [(label, load_task(task).eval) for label, task in forget.task_configs()]
        self.text = None if forget.text is None else text_chunks(forget.text, tokenizer, forget.text_tokens)
        if not kl_examples:
            raise ValueError(f"forget.enabled needs held-out prompts of task {cfg.task.name!r} for the KL; it has none")
        self.prompts = [encode_chat(tokenizer, e.prompt) for e in kl_examples[: forget.kl_prompts]]
        self.frozen = None if is_lora(policy) else copy.deepcopy(policy).requires_grad_(False).eval()
        self.pad_id = engine.pad_id
        self.samples: Samples | None = None
        self.start: dict[str, float] | None = None
        self.best: dict[str, Any] | None = None
        self.last: dict[str, float] = {}
        self.stop = False
        self.env: Any = None  # the retention tasks' environment (rewards {correct: 1}), made at first use

    @contextlib.contextmanager
    def base(self) -> Iterator[nn.Module]:
        """The base model: the adapter-disabled policy, or the frozen copy for full fine-tuning."""
        from reasonrl.model import reference

        if self.frozen is not None:
            yield self.frozen
        else:
            with reference(self.policy) as model:
                yield model

    def kl_params(self) -> SamplingParams:
        return SamplingParams(self.cfg.sampling.max_new_tokens, self.cfg.sampling.temperature, 1.0)

    def base_engine(self) -> Any:
        """Samples from the base: the run's engine with its adapter off (LoRA), or an hf engine on the frozen copy
        (full fine-tuning, where the run's engine holds only the trained weights)."""
        if self.frozen is None:
            return AdapterOff(self.engine)
        from reasonrl.engine.hf import HFEngine

        hf = replace(self.cfg.engine.hf, merge_lora=False)
        return HFEngine(self.frozen, self.tokenizer, replace(self.cfg.engine, hf=hf))

    def base_samples(self) -> Samples:
        """kl_prompts x kl_samples completions of the base, drawn once."""
        if self.samples is None:
            groups = self.base_engine().generate(
                self.prompts, self.kl_params(), self.cfg.forget.kl_samples, seed=self.cfg.seed + 1_234_567
            )
            self.samples = pack(self.prompts, groups, self.pad_id)
        return self.samples

    def retention(self, engine: Any, model: Any) -> dict[str, float]:
        """Suite -> value for the model that `engine` samples from; `model` (a context giving the same model)
        scores the text suite."""
        from reasonrl.envs import make_environment
        from reasonrl.evaluate import evaluate

        values: dict[str, float] = {}
        if self.suites:
            cfg = self.cfg
            params = SamplingParams(
                cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens, cfg.eval.temperature, cfg.sampling.top_p
            )
            if self.env is None:
                rewards = RewardConfig(components={"correct": 1.0}, timeout_s=cfg.rewards.timeout_s, workers=1)
                self.env = make_environment(SimpleNamespace(rewards=rewards, env=EnvConfig()))
            for label, examples in self.suites:
                result = evaluate(
                    self.env,
                    engine,
                    self.tokenizer,
                    examples,
                    params,
                    cfg.eval.samples,
                    seed=cfg.seed + 54_321,
                    task=label,
                )
                values[label] = result.accuracy if result.accuracy is not None else result.mean_reward
        if self.text is not None:
            with model as scored:
                values["text"] = text_loglik(scored, self.text, self.cfg.optim.micro_batch_size)
        return values

    def score_base(self) -> None:
        """Make the base, not the policy at the first measure(), the reference of the deltas (reasonrl eval)."""
        self.start = self.retention(self.base_engine(), self.base())

    def kl(self) -> dict[str, float]:
        """forget/kl_forward (on the fixed base samples) and forget/kl_reverse (on fresh policy samples)."""
        temperature, micro = self.cfg.sampling.temperature, self.cfg.optim.micro_batch_size
        forward, forward_k1 = sequence_kls(self.policy, self.base, self.base_samples(), temperature, micro, True)
        groups = self.engine.generate(
            self.prompts, self.kl_params(), self.cfg.forget.kl_samples, seed=self.cfg.seed + 7_654_321
        )
        own = pack(self.prompts, groups, self.pad_id)
        reverse, reverse_k1 = sequence_kls(self.policy, self.base, own, temperature, micro, False)
        (kl_f, se_f), (kl_r, se_r) = mean_and_se(forward), mean_and_se(reverse)
        return {
            "forget/kl_forward": kl_f,
            "forget/kl_forward_se": se_f,
            "forget/kl_forward_k1": forward_k1.mean().item(),
            "forget/kl_reverse": kl_r,
            "forget/kl_reverse_se": se_r,
            "forget/kl_reverse_k1": reverse_k1.mean().item(),
        }

    def measure(self, step: int, evaluation: dict[str, Any] | None = None) -> dict[str, float]:
        """forget/* metrics of the current policy. The first call (step 0) fixes the retention reference.
        evaluation (an EvalResult dict of the new task) ranks steps for on_budget=stop."""
        started = time.time()
        values = self.retention(self.engine, contextlib.nullcontext(self.policy))
        if self.start is None:
            self.start = values
        metrics = retention_metrics(values, self.start) | self.kl()
        if self.cfg.forget.kl_budget is not None:
            metrics["forget/over_budget"] = float(self.check_budget(step, evaluation, metrics["forget/kl_forward"]))
        self.last = metrics
        return metrics | {"time/forget": time.time() - started}

    def check_budget(self, step: int, evaluation: dict[str, Any] | None, kl: float) -> bool:
        """Warn or set self.stop past the budget; within it, keep the adapter when its eval score is the best."""
        forget = self.cfg.forget
        if over_budget(kl, forget.kl_budget):
            action = "stopping the run" if forget.on_budget == "stop" else "continuing (forget.on_budget=warn)"
            log.warning(
                "step %d: forward KL to the base %.4g nats/completion is past forget.kl_budget=%g; %s",
                step,
                kl,
                forget.kl_budget,
                action,
            )
            self.stop = forget.on_budget == "stop"
            return True
        score = eval_score(evaluation)
        keep = forget.on_budget == "stop" and self.run_dir is not None
        if keep and (self.best is None or score > self.best["score"]):
            save_atomically(self.policy, cast(Path, self.run_dir) / BEST_DIR)  # keep: run_dir is set
            self.best = {"step": step, "score": score, "kl_forward": kl}
        return False

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps so a resumed run measures against the same step 0."""
        return {"start": self.start, "best": self.best}

    def restore(self, state: dict[str, Any]) -> None:
        self.start, self.best = state.get("start"), state.get("best")

    def close(self) -> None:
        """Stop the retention environment's reward worker (also stopped at exit if this is never called)."""
        if self.env is not None:
            self.env.close()
            self.env = None

    def finish(self) -> dict[str, Any]:
        """After the run's adapter is saved: with a budget stop, replace it by the best adapter within budget.
        Returns {"forget": summary} for summary.json."""
        self.close()
        summary: dict[str, Any] = {"start": self.start, "last": self.last, "stopped": self.stop}
        if self.stop and self.best is not None and self.run_dir is not None:
            best = self.run_dir / BEST_DIR
            if best.is_dir():
                shutil.rmtree(self.run_dir / "adapter", ignore_errors=True)
                shutil.copytree(best, self.run_dir / "adapter")
                summary["kept_step"] = self.best["step"]
            else:
                log.warning("%s is missing; the run's adapter is its last step's", best)
        return {"forget": summary}


def eval_score(evaluation: dict[str, Any] | None) -> float:
    """How an evaluation ranks steps: accuracy, else the mean reward (-inf without an evaluation)."""
    if not evaluation:
        return float("-inf")
    return evaluation["accuracy"] if evaluation.get("accuracy") is not None else evaluation["mean_reward"]


def save_atomically(model: nn.Module, target: Path) -> None:
    tmp = target.with_name(f".tmp_{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    cast(Callable[[Path], None], model.save_pretrained)(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


class AdapterOff:
    """An engine as seen by the base model's sampler: generate() with adapter=False (no KV reuse)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.pad_id = engine, engine.pad_id

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int, seed: int, keep: bool = False
    ) -> list[list[Completion]]:
        return self.engine.generate(prompts, params, n, seed, adapter=False)


def make_monitor(
    cfg: RunConfig,
    policy: nn.Module,
    tokenizer: Any,
    engine: Any,
    kl_examples: list[Example],
    run_dir: Path | None = None,
) -> ForgettingMonitor | NullMonitor:
    """The run's forgetting monitor, or a NullMonitor when forget.enabled is false."""
    if not cfg.forget.enabled:
        return NullMonitor()
    return ForgettingMonitor(cfg, policy, tokenizer, engine, kl_examples, run_dir)


def format_forget(summary: dict[str, Any], header: str = "forgetting (delta from step 0)") -> str:
    """Lines for the end-of-run table (summary['forget']) or `reasonrl eval`: retention and KLs."""
    last = summary.get("last") or {}
    if not last:
        return ""
    suites = [k[len("forget/") : -len("/value")] for k in last if k.endswith("/value")]
    lines = [f"{header}:"]
    for suite in suites:
        lines.append(f"  {suite:32}{last[f'forget/{suite}/value']:>10.4f}  delta {last[f'forget/{suite}/delta']:+.4f}")
    lines.append(
        f"  KL(base||policy) {last['forget/kl_forward']:.4f} +- {last['forget/kl_forward_se']:.4f} "
        f"nats/completion (k1 {last['forget/kl_forward_k1']:.4f}); "
        f"KL(policy||base) {last['forget/kl_reverse']:.4f} +- {last['forget/kl_reverse_se']:.4f}"
    )
    if summary.get("stopped"):
        kept = summary.get("kept_step")
        lines.append(
            "  stopped: forward KL passed forget.kl_budget"
            + (f"; adapter = step {kept} (best eval within budget)" if kept is not None else "")
        )
    return "\n".join(lines)


def eval_report(cfg: RunConfig, policy: nn.Module, tokenizer: Any, engine: Any, kl_examples: list[Example]) -> str:
    """`reasonrl eval` with forget.enabled: retention of the evaluated model against the base (adapter
    disabled) and both KLs to the base, as printable lines."""
    monitor = ForgettingMonitor(cfg, policy, tokenizer, engine, kl_examples)
    try:
        monitor.score_base()
        summary = {"last": monitor.measure(0)}
    finally:
        monitor.close()
    return format_forget(summary, header="forgetting vs the base model (adapter disabled)")
