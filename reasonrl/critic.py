"""The critic for PPO (`algo.advantage=gae`): V(s_t) for every response position, trained in the same loop.

    values[:, t] = head(backbone(tokens[:, :t+1]))[t]     the value of the state before token t+1 (aligned with logp)
    L_V = 1/2 token-mean( max((V - G)^2, (V_clip - G)^2) ),  V_clip = V_old + clip(V - V_old, -eps_v, eps_v)
G are the GAE returns (A + V_old), V_old the values computed before the update (verl dp_critic).

Design: a separate copy of the base model with its own LoRA adapter (rank/alpha/targets of the `lora` section)
and a zero-initialised linear value head, with its own AdamW (algo.critic.lr). The alternative, a second LoRA
adapter on the policy's own module, saves one copy of the frozen base weights but needs the active adapter
switched around every forward of the engine, the reference and the update; a missed switch silently samples
from or trains the wrong weights, and with lora.enabled=false there would be no frozen backbone to share. A
second copy costs base-size memory (270 MB for the bf16 bundled model) and its own forward passes, and is
correct by construction. It starts from the policy's base model (without model.adapter), as verl's critic
starts from the actor's weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from reasonrl.algos.advantages import gae_advantages
from reasonrl.algos.losses import aggregate, masked_mean
from reasonrl.config import RunConfig
from reasonrl.model import load_policy, trainable_parameters
from reasonrl.types import Batch
from reasonrl.update import add_weighted, row_slices, split_rows

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float
) -> tuple[Tensor, dict[str, float]]:
    """Clipped value loss per token (B, T): 1/2 max((V - G)^2, (V_clip - G)^2) (verl compute_value_loss)."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)  # (B, T)
    unclipped_loss = (values - returns).pow(2)  # (B, T)
    clipped_loss = (clipped - returns).pow(2)  # (B, T)
    loss = 0.5 * torch.maximum(unclipped_loss, clipped_loss)  # (B, T)
    return loss * mask, {"clip_frac": masked_mean((clipped_loss > unclipped_loss).float(), mask)}


class Critic:
    """Owns the critic's model, value head and optimizer (state); the math is in value_loss/gae_advantages."""

    def __init__(self, cfg: RunConfig) -> None:
        model, _ = load_policy(dataclasses.replace(cfg.model, adapter=None), cfg.lora)
        self.model = model
        plain = cast("PeftModel", model).get_base_model() if hasattr(model, "get_base_model") else model
        base = cast("PreTrainedModel", plain)
        self.backbone = getattr(base, base.base_model_prefix)  # the decoder stack, no LM head
        self.head = nn.Linear(base.config.hidden_size, 1).to(next(model.parameters()).device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.params = trainable_parameters(model) + list(self.head.parameters())
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.algo.critic.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
        )
        self.cfg = cfg

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T+1) token ids -> (B, T) values of the positions that predict tokens[:, 1:]."""
        hidden = self.backbone(input_ids=tokens[:, :-1], use_cache=False).last_hidden_state  # (B, T, H)
        return self.head(hidden.float()).squeeze(-1)  # (B, T)

    @torch.no_grad()
    def values(self, batch: Batch) -> Tensor:
        """(B, T) values of the whole batch before any update, micro-batch by micro-batch (0 off the mask)."""
        optim = self.cfg.optim
        out = batch.sampler_logp.new_zeros(batch.mask.shape)  # (B, T)
        for rows in row_slices(batch, optim.micro_batch_size, optim.micro_batch_tokens):
            mb = batch.rows(rows).to(self.head.weight.device)
            out[rows, : mb.mask.shape[1]] = (self.forward(mb.tokens) * mb.mask).to(out.device)
        return out

    def update(self, batch: Batch) -> dict[str, float]:
        """Fit V to the GAE returns: algo.epochs x algo.mini_batches optimizer steps, like the policy."""
        algo, optim = self.cfg.algo, self.cfg.optim
        assert batch.values is not None and batch.token_rewards is not None, "values come before the update"
        _, batch.returns = gae_advantages(batch.token_rewards, batch.values, batch.mask, algo.gamma, algo.lam)
        steps = [rows for _ in range(algo.epochs) for rows in split_rows(batch.size, algo.mini_batches)]
        totals: dict[str, float] = {}
        for rows in steps:
            mini = batch.rows(rows)
            tokens = int(mini.mask.sum())
            for micro in row_slices(mini, optim.micro_batch_size, optim.micro_batch_tokens):
                mb = mini.rows(micro).to(self.head.weight.device)
                assert mb.values is not None and mb.returns is not None, "rows() keeps them"
                values = self.forward(mb.tokens)  # (b, T)
                loss, metrics = value_loss(values, mb.values, mb.returns, mb.mask, algo.critic.value_clip)
                aggregate(
                    loss, mb.mask, "token-mean", batch_tokens=tokens, batch_seqs=mini.size, max_len=mb.mask.shape[1]
                ).backward()
                metrics |= {
                    "value_loss": masked_mean(loss.detach(), mb.mask),
                    "value_mean": masked_mean(values.detach(), mb.mask),
                }
                add_weighted(totals, metrics, mb.mask.sum().item() / max(tokens, 1) / len(steps))
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
            add_weighted(totals, {"grad_norm": float(grad_norm)}, 1.0 / len(steps))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return {f"critic/{k}": v for k, v in totals.items()}

    def save(self, path: Path) -> None:
        """Write the critic's adapter (or model), head and optimizer into a checkpoint directory."""
        cast(Callable[[Path], None], self.model.save_pretrained)(path / "critic")
        torch.save({"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict()}, path / "critic.pt")

    def load(self, path: Path) -> None:
        from reasonrl.utils.ckpt import load_weights

        load_weights(self.model, path / "critic")
        state = torch.load(path / "critic.pt", weights_only=False)
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
