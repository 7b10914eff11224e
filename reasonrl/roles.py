"""The two roles behind the controller (HybridFlow's single controller): a rollout worker that samples and a
learner that trains. They talk only in values: trajectories and Batches one way, WeightUpdates the other, so
either can live in this process or in another one.

    worker = RolloutWorker(cfg, tokenizer, train_examples)      environment, engine, tokenizer
    learner = Learner(cfg)                                      policy, optimizer, schedule, critic, KL penalty
    collected, timings = worker.sample(step)
    metrics = learner.step(batch)                               one policy update (version + 1)
    worker.update_weights(learner.weights())                    the engine serves the new version
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from reasonrl.algos import ADVANTAGES, POLICY_LOSSES
from reasonrl.algos.advantages import needs_critic
from reasonrl.algos.dynamic_sampling import Collected, collect_groups
from reasonrl.algos.kl import KLController
from reasonrl.algos.shaping import shape_overlong
from reasonrl.config import RunConfig
from reasonrl.critic import Critic
from reasonrl.engine import ENGINES, SamplingParams
from reasonrl.envs import make_environment
from reasonrl.eval_progress import EvalProgress
from reasonrl.evaluate import EvalResult, evaluate_run
from reasonrl.model import load_policy, policy_logprobs
from reasonrl.parallel import DataParallel
from reasonrl.rollout import rollout
from reasonrl.types import Batch, Example, Trajectory
from reasonrl.update import Diverged, drop_truncated, make_optimizer, prepare, update
from reasonrl.utils.ckpt import load_weights
from reasonrl.weights import WeightUpdate, weights_of


def prompts_for_step(train: list[Example], per_step: int, step: int, seed: int) -> list[Example]:
    """The prompts of a step: consecutive slices of a per-epoch shuffle, so a resumed run sees the same ones."""
    out = []
    for i in range(step * per_step, (step + 1) * per_step):
        epoch, pos = divmod(i, len(train))
        order = list(range(len(train)))
        random.Random(seed * 7919 + epoch).shuffle(order)
        out.append(train[order[pos]])
    return out


def step_prompts(train: list[Example], cfg: RunConfig, step: int, attempt: int, n: int) -> list[Example]:
    """The n prompts of a rollout round. Round 0 is the step's slice of the epoch shuffle (all a run without
    dynamic sampling sees); backfill round k reads a second shuffle at a position unique to (step, k). Both are
    functions of the step, so a resumed run samples the same prompts."""
    if attempt == 0:
        return prompts_for_step(train, cfg.prompts_per_step, step, cfg.seed)[:n]
    position = step * cfg.algo.dynamic_sampling.max_tries + attempt
    return prompts_for_step(train, cfg.prompts_per_step, position, cfg.seed + 1)[:n]


def round_seeds(seed: int, step: int, attempt: int, n: int) -> list[int]:
    """The sampling seed of each of the n prompts of a rollout round: a function of (run seed, step, round,
    position), so a resumed run, or one whose round is split over several workers, samples the same."""
    base = ((seed * 1_000_003 + step) * 7_777_777 + attempt) * 1009
    return [(base + p) % (1 << 62) for p in range(n)]


def sample_step(cfg: RunConfig, step: int, sample_round: Callable[..., Any]) -> tuple[Collected, dict[str, float]]:
    """Collect the groups of a step from rollout rounds sample_round(step, attempt, n): with
    algo.dynamic_sampling, groups with equal rewards are dropped and more prompts are rolled out (backfill).
    Returns them with the seconds spent generating and in the environment, summed over rounds."""
    timings = {"generate": 0.0, "reward": 0.0}

    def one_round(attempt: int, n: int) -> list[Trajectory]:
        trajectories, spent = sample_round(step, attempt, n)
        for key, value in spent.items():
            timings[key] += value
        return trajectories

    collected = collect_groups(one_round, cfg.prompts_per_step, cfg.samples_per_prompt, cfg.algo.dynamic_sampling)
    return collected, timings


class RolloutWorker:
    """Owns an environment (with its reward workers), an engine and the tokenizer; samples the groups of a step.

    The engine is built from config and gets its weights only through update_weights. `shared`: the learner's
    policy when both live in this process, so the engine reads its frozen base weights instead of loading its
    own copy."""

    def __init__(self, cfg: RunConfig, tokenizer: Any, train: list[Example], shared: nn.Module | None = None):
        self.cfg, self.tokenizer, self.train = cfg, tokenizer, train
        self.env = make_environment(cfg)
        self.engine = ENGINES.get(cfg.engine.name)(cfg.model, cfg.lora, cfg.engine, tokenizer, shared=shared)
        self.pad_id: int = self.engine.pad_id
        self.params = SamplingParams(
            cfg.sampling.max_new_tokens, cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.min_new_tokens
        )

    @property
    def version(self) -> int | None:
        """The policy version the engine serves."""
        return self.engine.version

    def sample(self, step: int) -> tuple[Collected, dict[str, float]]:
        """The groups of a step from this worker alone (sample_step over sample_round)."""
        return sample_step(self.cfg, step, self.sample_round)

    def sample_round(
        self, step: int, attempt: int, n: int, share: tuple[int, int] | None = None
    ) -> tuple[list[Trajectory], dict[str, float]]:
        """Roll out prompts share[0]..share[1]-1 (default all n) of the step's rollout round `attempt` and shape
        their rewards (DAPO overlong). Each prompt has its own seed (round_seeds), so splitting a round over
        several workers samples what one worker would. Groups are numbered within the round; each trajectory
        records the policy version that sampled it (info["version"]). Returns them with the seconds spent
        generating ("generate") and in the environment ("reward")."""
        lo, hi = share or (0, n)
        spent: dict[str, float] = {}
        trajectories = rollout(
            self.env,
            self.engine,
            self.tokenizer,
            step_prompts(self.train, self.cfg, step, attempt, n)[lo:hi],
            n=self.cfg.samples_per_prompt,
            params=self.params,
            seed=round_seeds(self.cfg.seed, step, attempt, n)[lo:hi],
            timings=spent,
        )
        for t in trajectories:
            t.group += lo
            t.info["version"] = self.version
        shape_overlong(trajectories, self.cfg.sampling.max_new_tokens, self.cfg.algo.overlong)
        return trajectories, {"generate": spent.get("generate", 0.0), "reward": spent.get("reward", 0.0)}

    def evaluate(
        self, examples: list[Example], task: str | None = None, report: EvalProgress | None = None
    ) -> EvalResult:
        """Held-out accuracy, pass@k, maj@k and reward parts on examples (eval.* settings; evaluate.py)."""
        return evaluate_run(self.env, self.engine, self.tokenizer, examples, self.cfg, task, report)

    def update_weights(self, update: WeightUpdate) -> None:
        self.engine.update_weights(update)

    def probe(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[list[Any]]:
        """One continuation of each prompt with its sampler log-probs (the weight-sync check)."""
        return self.engine.generate(prompts, params, n=1, seed=seed)

    def state_dict(self) -> dict[str, Any]:
        return {"version": self.version}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore but the version, which the learner's next WeightUpdate sets."""

    def sleep(self) -> None:
        """Release the engine's accelerator memory while the learner trains (vllm on a GPU; else a no-op)."""
        self.engine.sleep()

    def wake(self) -> None:
        self.engine.wake()

    def close(self) -> None:
        self.env.close()
        self.engine.close()


class Learner:
    """Owns the policy, its optimizer and learning-rate schedule, the critic (gae) and the KL penalty; turns a
    Batch into one policy update. Every registered name it needs is resolved here, before anything is written."""

    def __init__(self, cfg: RunConfig, dp: DataParallel | None = None) -> None:
        self.cfg, self.dp = cfg, dp
        self.advantage_fn = ADVANTAGES.get(cfg.algo.advantage)
        self.loss_fn = POLICY_LOSSES.get(cfg.algo.loss.name)
        self.policy, self.tokenizer = load_policy(cfg.model, cfg.lora, seed=cfg.seed)
        self.critic = Critic(cfg) if needs_critic(self.advantage_fn) else None  # gae: a learned V(s_t)
        self.kl = KLController.from_config(cfg.algo.kl)
        self.optimizer, self.scheduler = make_optimizer(self.policy, cfg)
        self.nonfinite_in_row = 0
        """Batches in a row on which every optimizer step was skipped (a NaN/inf loss or gradient)."""
        self.version = 0
        """Policy updates applied so far (the version of the weights() it hands out)."""

    def step(self, batch: Batch | None) -> dict[str, float]:
        """One policy update on a collated batch (None: a step without groups: only the schedule moves)."""
        metrics: dict[str, float] = {}
        cfg = self.cfg
        if batch is not None:
            metrics |= prepare(self.policy, self.critic, batch, cfg, self.kl, self.dp)  # ref/old logp, values, KL
            batch.adv = self.advantage_fn(batch, cfg.algo)  # (B, T)
            if cfg.algo.overlong.mask_truncated:
                batch = drop_truncated(batch)
            metrics |= update(self.policy, self.optimizer, batch, self.loss_fn, cfg, self.kl, self.dp)
            self._check_finite(metrics)
            if self.critic is not None:
                metrics |= self.critic.update(batch)
            if not metrics.get("optim/skipped"):
                self.kl.update(metrics.get("loss/kl"), cfg.batch_size)
            self.version += 1
        self.scheduler.step()
        return metrics | {"optim/lr": self.scheduler.get_last_lr()[0]}

    def _check_finite(self, metrics: dict[str, float]) -> None:
        """Count batches whose every optimizer step was skipped (NaN/inf); raise Diverged after too many in a row."""
        steps = metrics.pop("optim/steps")
        all_skipped = steps > 0 and metrics["optim/skipped"] == steps
        self.nonfinite_in_row = self.nonfinite_in_row + 1 if all_skipped else 0
        limit = self.cfg.optim.max_nonfinite_steps
        if limit and self.nonfinite_in_row >= limit:
            raise Diverged(
                f"the loss or its gradient was NaN/inf on {limit} steps in a row "
                f"(optim.max_nonfinite_steps={limit}); none of them changed the weights. Likely causes: "
                f"a learning rate too high (optim.lr={self.cfg.optim.lr}), rewards on a huge scale, or "
                f"an overflow in "
                f"model.dtype={self.cfg.model.dtype}; lower optim.lr or check the rewards, then "
                "--resume from the last checkpoint"
            )

    def weights(self, device: str | torch.device | None = "cpu") -> WeightUpdate:
        """The current policy as a value (device None: leave the tensors where they are, for a local engine)."""
        return weights_of(self.policy, self.version, device)

    @torch.no_grad()
    def score(self, sequences: list[list[int]], starts: list[int]) -> list[list[float]]:
        """Log-probs (temperature 1) of the sequences' tokens from `starts` on, as the trainer computes them."""
        width = max(map(len, sequences))
        tokens = torch.zeros(len(sequences), width, dtype=torch.long)
        mask = torch.zeros(len(sequences), width - 1, dtype=torch.bool)
        for i, (seq, start) in enumerate(zip(sequences, starts)):
            tokens[i, : len(seq)] = torch.tensor(seq)
            mask[i, start - 1 : len(seq) - 1] = True
        device = next(self.policy.parameters()).device
        logp = policy_logprobs(self.policy, tokens.to(device), mask.to(device), None, 1.0).float().cpu()  # (B, W-1)
        return [logp[i, start - 1 : len(seq) - 1].tolist() for i, (seq, start) in enumerate(zip(sequences, starts))]

    def state_dict(self) -> dict[str, Any]:
        """The small state, for trainer_state.json (the tensors are written by save())."""
        return {"version": self.version, "kl_coef": self.kl.coef}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kl.load_state_dict({"coef": state.get("kl_coef", self.kl.coef)})
        self.version = int(state.get("version", state.get("step", 0)))

    def save_adapter(self, path: Path) -> None:
        """The trained weights alone (a PEFT adapter directory, or the whole model with full fine-tuning)."""
        cast(Callable[[Path], None], self.policy.save_pretrained)(path)

    def save(self, path: Path) -> None:
        """The tensors of a checkpoint: adapter (or model), optimizer and schedule, critic."""
        cast(Callable[[Path], None], self.policy.save_pretrained)(path / "adapter")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}, path / "optim.pt"
        )
        if self.critic is not None:
            self.critic.save(path)

    def load(self, path: Path) -> None:
        load_weights(self.policy, path / "adapter")
        state = torch.load(path / "optim.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.critic is not None:
            self.critic.load(path)
