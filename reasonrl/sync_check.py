"""Weight-sync verification, after every update (engine.verify): the engine must serve what the learner trained.

A silent sync failure (the engine keeps sampling the old policy after an adapter update) is the most common bug
across RL frameworks, and nothing downstream notices: the run trains on off-policy samples with importance ratios
it believes are 1. So after every WeightUpdate the engine samples a short continuation of a few fixed prompts
(chosen once per run, fixed seed, temperature 1) and reports its log-probs; the learner scores the same tokens and
    gap = max over probe tokens |log p_engine - log p_learner|
must stay within engine.verify_tolerance, and the engine must report the version the learner handed out.
On a mismatch the run stops (engine.verify=stop, default), warns (warn) or the check is skipped (off). It needs
nothing from an engine but generate(), so every engine is checked the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from reasonrl.errors import RunFailure
from reasonrl.engine import SamplingParams
from reasonrl.tokenizer import encode_chat
from reasonrl.types import Example

log = logging.getLogger(__name__)

# Max |logp| gap per token between an engine and the learner when both hold the same weights. fp32: a merged
# copy (W0 + BA) against the LoRA forward differs by ~1e-6 on the tiny model. bf16: the merged weights rounded
# to bf16 against the bf16 base plus the LoRA branch under autocast, on the bundled model: 0.09-0.21 over the
# quickstart's steps 1-4; over 24 runs x 20 steps of experiments/reasoning_study.py, at most 0.35 except one
# 0.53 (step 16 of a run whose answers had collapsed to a few sharp tokens), so bf16 gets 1.0. In bf16 one
# optimizer step can move the weights by less than their rounding, so there the log-prob check catches a corrupt
# engine (a wrong model, scale or adapter: gaps of nats), not a stale one; the version check catches a skipped
# update at once in every dtype.
TOLERANCE = {"float32": 1e-3, "bfloat16": 1.0}


PROBE_SEED = 20_240_229


class SyncError(RunFailure):
    """The engine does not serve the weights the learner trained."""


class SyncCheck:
    def __init__(
        self,
        tokenizer: Any,
        examples: list[Example],
        mode: str,
        tolerance: float | None,
        dtype: str,
        probes: int = 1,
        prompt_tokens: int = 16,
        tokens: int = 2,
    ) -> None:
        self.mode = mode
        self.tolerance = TOLERANCE.get(dtype, 0.5) if tolerance is None else tolerance
        # Short probes keep the check cheap (it runs after every update): the last prompt_tokens of the chat
        # prompt, then `tokens` sampled tokens; every position of the sampled tail is compared.
        self.prompts = [encode_chat(tokenizer, e.prompt)[-prompt_tokens:] for e in examples[:probes]]
        self.params = SamplingParams(max_new_tokens=tokens, temperature=1.0)

    def check(self, step: int, worker: Any, learner: Any) -> dict[str, float]:
        """Compare the engine with the learner after step `step`'s sync; returns sync/* metrics."""
        if self.mode == "off" or not self.prompts:
            return {}
        sampled = [group[0] for group in worker.probe(self.prompts, self.params, seed=PROBE_SEED)]
        engine = [c.logprobs for c in sampled]
        trainer = learner.score(
            [p + c.token_ids for p, c in zip(self.prompts, sampled)], [len(p) for p in self.prompts]
        )
        gap = max(abs(a - b) for e, t in zip(engine, trainer) for a, b in zip(e, t))
        problems = []
        if worker.version != learner.version:
            problems.append(f"the engine serves version {worker.version}, the learner handed out {learner.version}")
        if gap > self.tolerance:
            problems.append(
                f"its log-probs differ from the learner's by up to {gap:.4g} per token "
                f"(engine.verify_tolerance={self.tolerance:g})"
            )
        if problems:
            message = (
                f"weight sync failed after step {step} (policy version {learner.version}): "
                + "; ".join(problems)
                + ". The engine is not sampling the policy being trained; "
                "engine.verify=warn continues anyway"
            )
            if self.mode == "stop":
                raise SyncError(message)
            log.warning(message)
        return {"sync/logp_gap": gap}
