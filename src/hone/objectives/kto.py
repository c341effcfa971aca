"""KTO: Kahneman-Tversky optimisation on unpaired completions judged good or bad (Ethayarajh et al. 2024).

The data are judged records (`{"prompt", "completion", "label": true|false}`) or preference pairs,
each pair giving a desirable and an undesirable completion (`hone.data.judged`). The implied reward
is r = log pi(y|x) - log pi_ref(y|x); the reference point z0 is the policy's KL from the reference,
estimated on mismatched (prompt, another unit's reply) sequences, clamped at 0 and not
back-propagated (the paper's eq. 7 and section 4.1). Each unit is scored in one forward pass with
its mismatched sequence (segment attention). The reference policy costs no copy of the weights, as
for DPO: the adapter disabled, or the start model's log-probs stored before the first step for
methods without an adapter (`begin`).
Where hone departs from the paper: z0 is estimated per micro-batch (the paper: per batch), so
gradient accumulation gives the mean of per-micro-batch estimates.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from hone.config.base import Section
from hone.data.judged import JUDGED_FORMATS as FORMATS
from hone.data.batching import Batching
from hone.data.collate import collate_sequences
from hone.data.judged import judged_length, prepare_judged
from hone.objectives.base import Objective, ObjectiveKind
from hone.objectives.dpo import StoredReference, sequence_log_probs


class Config(Section):
    type: Literal["kto"] = "kto"
    beta: float = Field(0.1, gt=0, description="Scale of the implied reward inside the sigmoid (the KL weight); "
                                               "smaller lets the policy move further from the reference.")
    desirable_weight: float = Field(1.0, gt=0, description="lambda_D: the weight of desirable completions' losses.")
    undesirable_weight: float = Field(1.0, gt=0, description="lambda_U: the weight of undesirable completions' "
                                                             "losses; the paper keeps lambda_D n_D / (lambda_U n_U) "
                                                             "between 1 and 4/3.")
    loss_chunk_tokens: int = Field(1024, gt=0, description="Target tokens per chunk of output-head logits.")


def build(config: Config) -> "KTO":
    return KTO(config)


def kto_loss(policy, reference, policy_kl, reference_kl, desirable, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
    """Per-completion KTO losses, the implied rewards and the reference point.

    policy, reference: (B,) summed reply log-probs; policy_kl, reference_kl: (B,) the same for the
    mismatched sequences; desirable: (B,) bool.
    r = policy - reference;  z0 = max(0, mean(policy_kl - reference_kl)), detached
    desirable:   lambda_D (1 - sigmoid(beta (r - z0)))
    undesirable: lambda_U (1 - sigmoid(beta (z0 - r)))
    (the paper's lambda_y - v(x, y)). Returns (losses (B,), rewards (B,) = beta r detached, z0 ()).
    """
    z0 = (policy_kl - reference_kl).mean().clamp(min=0).detach()
    ratio = policy - reference
    sign = torch.where(desirable, 1.0, -1.0).to(ratio.dtype)
    weight = torch.where(desirable, desirable_weight, undesirable_weight).to(ratio.dtype)
    losses = weight * (1 - torch.sigmoid(beta * sign * (ratio - z0)))
    return losses, beta * ratio.detach(), z0


class KTO(StoredReference, Objective):
    """Judged completions in, KTO loss out; the unit is a completion (with its mismatched KL sample)."""

    name = "kto"

    def __init__(self, config: Config) -> None:
        self.config = config

    def prepare(self, data_config, tokenizer, seed: int):
        return prepare_judged(data_config, tokenizer, seed=seed, objective=self.name)

    def length(self, unit) -> int:
        return judged_length(unit)

    def collate(self, units, batching: Batching) -> dict:
        """Sequences [completion 0, mismatched 0, completion 1, ...]; a unit's two share a row when packing."""
        flat = [side for unit in units for side in (unit.completion, unit.mismatched)]
        batch = collate_sequences(flat, [[2 * i, 2 * i + 1] for i in range(len(units))], batching)
        batch["desirable"] = torch.tensor([unit.desirable for unit in units])
        if units and all(unit.reference is not None for unit in units):
            batch["reference"] = torch.tensor([value for unit in units for value in unit.reference])
        return batch

    def validation_batches(self, units, batching: Batching, per_batch: int = 8) -> list[dict]:
        return [self.collate(units[i:i + per_batch], batching)
                for i in range(0, len(units), per_batch)]

    def units(self, batch) -> int:
        return len(batch["desirable"])

    def loss(self, model, batch):
        c = self.config
        policy, _ = sequence_log_probs(model, batch, c.loss_chunk_tokens)
        reference = self.reference_log_probs(model, batch, policy.dtype)
        desirable = batch["desirable"].to(policy.device)
        losses, rewards, z0 = kto_loss(policy[0::2], reference[0::2], policy[1::2], reference[1::2], desirable,
                                       c.beta, c.desirable_weight, c.undesirable_weight)
        loss_sum = losses.sum()
        return loss_sum, {"loss_sum": loss_sum.item(), "completions": len(losses), "kl_sum": z0.item(),
                          "micro_batches": 1, "desirable": int(desirable.sum()),
                          "desirable_reward_sum": rewards[desirable].sum().item(),
                          "undesirable_reward_sum": rewards[~desirable].sum().item()}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        """Mean implied reward of desirable and undesirable completions, their margin, and z0."""
        desirable = sum(p["desirable"] for p in parts)
        undesirable = sum(p["completions"] for p in parts) - desirable
        good = sum(p["desirable_reward_sum"] for p in parts) / max(desirable, 1)
        bad = sum(p["undesirable_reward_sum"] for p in parts) / max(undesirable, 1)
        return {"rewards_desirable": good, "rewards_undesirable": bad, "reward_margin": good - bad,
                "kl": sum(p["kl_sum"] for p in parts) / max(sum(p["micro_batches"] for p in parts), 1)}


KIND = ObjectiveKind("kto", Config, build, FORMATS)
