"""Configuration of the algorithm (the `algo` section of RunConfig): advantage, policy loss variants chosen by
`name`, KL, entropy, epochs and mini-batches, the critic, and DAPO's overlong shaping and dynamic sampling.

Part of RunConfig (reasonrl/config/run.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class KLConfig:
    coef: float = 0.0
    """Weight beta of the KL to the reference (the starting value when target is set); 0 never runs the reference."""
    estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator; k3 is unbiased and non-negative (DeepSeekMath); k1 is the usual one in the reward."""
    placement: Literal["loss", "reward"] = "loss"
    """'loss': beta * KL(logp, ref) is a loss term (GRPO). 'reward': r_t -= beta * KL(old_logp, ref) on every token
    before the advantages, never differentiated (InstructGPT/PPO, REINFORCE++, RLOO)."""
    target: float | None = None
    """None: fixed beta. A value: Ziegler's adaptive controller (arXiv:1909.08593) steers beta so the token-mean KL
    approaches this target."""
    horizon: int = 10000
    """Adaptive controller: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * batch_size / horizon after every step."""


@dataclass(frozen=True)
class PPOClipLoss:
    name: Literal["ppo_clip"] = "ppo_clip"
    """Policy loss (see `reasonrl list`); each loss has its own fields."""
    clip_low: float = 0.2
    """Lower clip: the ratio is kept above 1 - clip_low."""
    clip_high: float = 0.2
    """DAPO's clip-higher uses 0.28."""
    clip_ratio_c: float | None = None
    """Dual-clip (arXiv:1912.09729): for A < 0 the loss is capped at -c * A (verl uses 3.0; must be > 1). None: off."""

    def __post_init__(self) -> None:
        _check_clip("algo.loss", self.clip_low, self.clip_high)
        if self.clip_ratio_c is not None and self.clip_ratio_c <= 1:
            raise ValueError(
                f"algo.loss.clip_ratio_c must be > 1 (the dual-clip floor -c*A sits below the clipped "
                f"loss), got {self.clip_ratio_c}; use 3.0 or null to turn it off"
            )


@dataclass(frozen=True)
class GSPOLoss:
    name: Literal["gspo"] = "gspo"
    """GSPO (arXiv:2507.18071): one importance ratio per sequence, the geometric mean of its token ratios."""
    clip_low: float = 3e-4
    """Lower clip of the sequence ratio (GSPO: 3e-4)."""
    clip_high: float = 4e-4
    """Upper clip of the sequence ratio (GSPO: 4e-4)."""

    def __post_init__(self) -> None:
        _check_clip("algo.loss", self.clip_low, self.clip_high)


@dataclass(frozen=True)
class CISPOLoss:
    name: Literal["cispo"] = "cispo"
    """CISPO (MiniMax-M1, arXiv:2506.13585): REINFORCE weighted by the clipped, detached importance ratio."""
    clip_high: float = 5.0
    """Cap on the detached importance ratio (5.0 per ScaleRL, arXiv:2510.13786)."""

    def __post_init__(self) -> None:
        if self.clip_high < 1:
            raise ValueError(
                f"algo.loss.clip_high must be >= 1 for cispo (a cap below 1 down-weights every "
                f"on-policy token), got {self.clip_high}; use 5.0"
            )


@dataclass(frozen=True)
class ReinforceLoss:
    name: Literal["reinforce"] = "reinforce"
    """Plain REINFORCE, -A * ratio with no clipping (on-policy: -A * grad logp; RLOO paper, arXiv:2402.14740)."""


PolicyLossConfig = PPOClipLoss | GSPOLoss | CISPOLoss | ReinforceLoss


def _check_clip(where: str, low: float, high: float) -> None:
    if not 0 <= low < 1 or high < 0:
        raise ValueError(
            f"{where}: clip_low must be in [0, 1) and clip_high >= 0 (the ratio is clipped to "
            f"[1 - clip_low, 1 + clip_high]), got clip_low={low}, clip_high={high}"
        )


@dataclass(frozen=True)
class CriticConfig:
    lr: float = 1e-3
    """Learning rate of the critic (its LoRA adapter and value head; verl's critic uses 10x the actor's)."""
    value_clip: float = 0.5
    """Clipped value loss: V is kept within value_clip of the values before the update (verl cliprange_value)."""


@dataclass(frozen=True)
class OverlongConfig:
    buffer: int = 0
    """DAPO soft overlong punishment (arXiv:2503.14476): over the last `buffer` tokens before
    sampling.max_new_tokens (L_cache) the reward falls linearly from 0 to -penalty. 0: off."""
    penalty: float = 1.0
    """The penalty at the length limit (DAPO: 1 with rewards +-1)."""
    mask_truncated: bool = False
    """Overlong filtering: completions cut at the limit (no EOS) count in their group's advantages but are left out
    of the loss."""


@dataclass(frozen=True)
class DynamicSamplingConfig:
    enabled: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are all equal (zero advantage) and roll out more prompts
    until prompts_per_step groups with a signal remain."""
    max_tries: int = 4
    """Rollout rounds per step at most, the first included. After that the step trains on the groups it has
    (a partial batch) and warns; with none it skips the update."""


@dataclass(frozen=True)
class AlgoConfig:
    advantage: str = "grpo"
    """Advantage estimator (see `reasonrl list`)."""
    scale_by_std: bool = True
    """GRPO divides by the group's std; Dr.GRPO does not. gigpo: at both levels (the paper's "w/ std", "w/o std")."""
    std_eps: float = 1e-6
    """Added to the group std before dividing."""
    unbiased_std: bool = True
    """Bessel-corrected group std (torch.std, TRL, verl). False: population std, as in DeepSeekMath's worked example."""
    gamma: float = 1.0
    """Discount of returns: per token in gae and reinforce_pp (1.0 is standard for verifiable rewards), per
    environment step in gigpo (its reference ALFWorld run uses 0.95, so faster success ranks higher)."""
    lam: float = 1.0
    """GAE lambda (gae only)."""
    gigpo_omega: float = 1.0
    """GiGPO (gigpo only): weight omega of the step-level (anchor-state) advantage added to the episode-level
    one; 1.0 as in the paper, 0 gives grpo."""
    loss: PolicyLossConfig = field(default_factory=PPOClipLoss)
    aggregation: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = (
        "token-mean"
    )
    """How per-token losses become one number: token-mean (DAPO), seq-mean-token-mean (GRPO paper, GSPO),
    seq-mean-token-sum, seq-mean-token-sum-norm (Dr.GRPO's constant)."""
    token_normalizer: Literal["mini_batch", "batch_average"] = "mini_batch"
    """token-mean's divisor when algo.mini_batches > 1: mini_batch divides each optimizer step's loss by the tokens
    it trains on (verl); batch_average by the whole rollout batch's tokens / mini_batches, the same for every
    step (TRL's GRPOTrainer). Equal with one mini-batch."""
    kl: KLConfig = field(default_factory=KLConfig)
    entropy_coef: float = 0.0
    """Entropy bonus: loss -= entropy_coef * aggregated token entropy (0 computes no entropy)."""
    epochs: int = 1
    """Passes over each rollout batch (mu); with epochs * mini_batches > 1 old log-probs are computed and the
    clip matters."""
    mini_batches: int = 1
    """Optimizer steps per epoch: the batch is split into this many mini-batches of whole rows."""
    tis_cap: float | None = None
    """Truncated importance sampling between sampler and trainer: each token's loss is weighted by
    min(exp(old_logp - sampler_logp), tis_cap). None: off (2.0 is common)."""
    max_staleness: int = 0
    """Asynchronous rollouts: the batch of step s is sampled by policy version s - max_staleness (0: on-policy,
    sampled by the policy it trains). Workers sample ahead while the learner trains; the old log-probs are the
    current policy's and the loss is corrected towards the sampler by truncated importance sampling (tis_cap,
    2.0 when null)."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)

    def __post_init__(self) -> None:
        _check_algo(self)


def _check_algo(algo: AlgoConfig) -> None:
    """Rules between algo fields (single fields are checked by their own dataclass)."""
    for key, value in {"gamma": algo.gamma, "lam": algo.lam}.items():
        if not 0 <= value <= 1:
            raise ValueError(f"algo.{key} must be in [0, 1], got {value}")
    if algo.std_eps < 0 or algo.entropy_coef < 0:
        raise ValueError(f"algo.std_eps and algo.entropy_coef must be >= 0, got {algo.std_eps}, {algo.entropy_coef}")
    if algo.max_staleness < 0:
        raise ValueError(f"algo.max_staleness must be >= 0 (0: on-policy), got {algo.max_staleness}")
    if algo.tis_cap is not None and algo.tis_cap <= 0:
        raise ValueError(f"algo.tis_cap must be > 0 (2.0 is common) or null to turn it off, got {algo.tis_cap}")
    if algo.loss.name == "gspo" and algo.aggregation != "seq-mean-token-mean":
        raise ValueError(
            f"algo.loss.name=gspo needs algo.aggregation=seq-mean-token-mean (its sequence ratio is "
            f"a per-sequence objective), got {algo.aggregation!r}; "
            "set algo.aggregation=seq-mean-token-mean"
        )
    if algo.kl.placement == "reward" and algo.advantage in ("grpo_process", "gigpo") and algo.kl.coef > 0:
        raise ValueError(
            f"algo.kl.placement=reward is not defined for algo.advantage={algo.advantage} (it reads the "
            "per-step rewards, which carry no KL); use algo.kl.placement=loss, as DeepSeekMath and "
            "GiGPO do"
        )
    if algo.gigpo_omega < 0:
        raise ValueError(
            f"algo.gigpo_omega must be >= 0 (the weight of GiGPO's step-level advantage), got "
            f"{algo.gigpo_omega}; use 1.0 (the paper's) or 0 for grpo"
        )
    if algo.kl.target is not None and (algo.kl.target <= 0 or algo.kl.coef <= 0):
        raise ValueError(
            f"algo.kl.target ({algo.kl.target}) must be > 0 and needs algo.kl.coef > 0 as the "
            f"controller's starting value (got {algo.kl.coef}); e.g. algo.kl.coef=0.05"
        )
    if algo.kl.horizon < 1 or algo.critic.value_clip <= 0 or algo.critic.lr <= 0:
        raise ValueError(
            f"algo.kl.horizon must be >= 1 and algo.critic.value_clip, algo.critic.lr > 0, got "
            f"{algo.kl.horizon}, {algo.critic.value_clip}, {algo.critic.lr}"
        )
    if algo.overlong.buffer < 0 or algo.overlong.penalty < 0 or algo.dynamic_sampling.max_tries < 1:
        raise ValueError(
            f"algo.overlong.buffer and .penalty must be >= 0 and algo.dynamic_sampling.max_tries >= 1, "
            f"got {algo.overlong.buffer}, {algo.overlong.penalty}, {algo.dynamic_sampling.max_tries}"
        )
