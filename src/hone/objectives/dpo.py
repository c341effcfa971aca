"""Direct preference optimisation (Rafailov et al. 2023) on preference pairs, with IPO and hinge variants.

Both replies of a pair sit in one packed row, so one forward pass (segment attention) gives both
summed log-probs. The reference policy costs no second copy of the weights:
- with an adapter method it is the same model with its adapter disabled (PEFT's `disable_adapter()`),
  or the frozen start adapter when the run continues one (`method.init_from`): one more forward pass
  without gradients per batch;
- without one (`full`, `layers`, bottleneck `adapters`) `begin` scores every training and validation
  pair once with the start model, without gradients, before the first step, and keeps the sums on
  the pairs (TRL's `precompute_ref_log_probs`). A resumed run scores them again from the freshly
  loaded base before its checkpoint is restored, so they are the start model's, not a file that
  could drift from the data.
Where hone departs from the papers or TRL:
- IPO's log-ratios are averaged per reply token before the squared loss (as TRL does, after the
  IPO authors), so `beta` means the same for short and long replies.
- `sft_weight` adds that weight times the chosen reply's mean token NLL per pair (TRL's `sft`
  loss averages over all tokens of the batch instead).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.collate import to_device
from hone.data.pairs import PAIR_FORMATS as FORMATS
from hone.data.template import IGNORE
from hone.methods import reference_policy
from hone.objectives.base import Objective, ObjectiveKind, PairUnits
from hone.objectives.losses import linear_token_log_probs
from hone.objectives.sft import hidden_states


class Config(Section):
    type: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference (the KL weight); smaller lets the policy move further."""
    variant: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """The loss on the log-ratio margin: DPO's sigmoid, IPO's squared (per reply token), or a hinge."""
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5)
    """Assumed fraction of flipped preference labels (conservative DPO); sigmoid only."""
    sft_weight: float = Field(0.0, ge=0.0)
    """Add this times the chosen reply's mean token NLL to each pair's loss (0: pure DPO)."""
    loss_chunk_tokens: int = Field(1024, gt=0)
    """Tokens per chunk of output-head logits (bounds the logits' memory)."""

    @model_validator(mode="after")
    def _smoothing_needs_sigmoid(self):
        if self.label_smoothing and self.variant != "sigmoid":
            raise ValueError(f"label_smoothing applies to the sigmoid variant, not {self.variant}")
        return self


def build(config: Config) -> "DPO":
    return DPO(config)


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float,
             variant: str = "sigmoid", label_smoothing: float = 0.0):
    """Per-pair DPO losses and the implicit rewards; every input is (B,) summed reply log-probs.

    d = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    sigmoid: -(1 - eps) log sigmoid(beta d) - eps log sigmoid(-beta d)
    ipo:     (d - 1 / (2 beta))^2
    hinge:   max(0, 1 - beta d)
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)), rewards = beta * log-ratio, detached.
    """
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    d = chosen_ratio - rejected_ratio
    if variant == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * d) - label_smoothing * F.logsigmoid(-beta * d)
    elif variant == "ipo":
        losses = (d - 1 / (2 * beta)) ** 2
    elif variant == "hinge":
        losses = torch.relu(1 - beta * d)
    else:
        raise ValueError(f"unknown DPO variant {variant!r}; expected sigmoid, ipo or hinge")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def sequence_log_probs(model, batch, chunk_tokens: int):
    """Summed log-probs of each sequence's target tokens, and their counts: (N,), (N,)."""
    hidden = hidden_states(model, batch)
    targets = batch["targets"]
    keep = targets.ne(IGNORE)
    owner = batch["sequence"][keep]
    n = batch["last"].shape[0]
    head = model.get_output_embeddings().weight
    per_token = linear_token_log_probs(hidden[keep], head, targets[keep], chunk_tokens)
    sums = per_token.new_zeros(n).index_add(0, owner, per_token)
    counts = per_token.new_zeros(n).index_add(0, owner, torch.ones_like(per_token))
    return sums, counts


def mean_log_probs(model, batch, chunk_tokens: int):
    """Each sequence's mean target-token log-prob (N,): the length-normalised log-likelihood."""
    sums, counts = sequence_log_probs(model, batch, chunk_tokens)
    return sums / counts.clamp(min=1)


@torch.no_grad()
def store_reference_log_probs(model, pairs, chunk_tokens: int, batches) -> None:
    """Set each pair's `reference` to the model's summed (chosen, rejected) log-probs; `batches` are
    the pairs collated in order. Runs in eval mode (no dropout) on the model's device."""
    device, training = next(model.parameters()).device, model.training
    model.eval()
    sums = torch.cat([sequence_log_probs(model, to_device(b, device), chunk_tokens)[0].float().cpu() for b in batches])
    model.train(training)
    for pair, (chosen, rejected) in zip(pairs, sums.view(-1, 2).tolist(), strict=True):
        pair.reference = (chosen, rejected)


class StoredReference:
    """An objective scored against its start policy, whose units hold two sequences each (a pair; a KTO
    completion and its KL sample): the adapter switched off, or without an adapter the start model's
    log-probs of both, stored on the unit by `begin` (see the module)."""

    config: Config

    def begin(self, model, data, batching: Batching, method) -> None:
        """Without an adapter, keep the start model's log-probs of every unit on the unit (see the module)."""
        if method.adapter:
            return
        units = data.train + data.validation
        store_reference_log_probs(model, units, self.config.loss_chunk_tokens,
                                  self.validation_batches(units, batching))

    def reference_log_probs(self, model, batch, dtype):
        """(N,) summed log-probs of the batch's sequences under the start policy."""
        if "reference" in batch:
            return batch["reference"].to(dtype)
        with torch.no_grad(), reference_policy(model):
            return sequence_log_probs(model, batch, self.config.loss_chunk_tokens)[0]


class DPO(PairUnits, StoredReference, Objective):
    """Preference pairs in, DPO loss out; the unit is a pair."""

    name = "dpo"

    def __init__(self, config: Config) -> None:
        self.config = config

    def loss(self, model, batch):
        c = self.config
        policy, counts = sequence_log_probs(model, batch, c.loss_chunk_tokens)
        reference = self.reference_log_probs(model, batch, policy.dtype)
        scale = counts.clamp(min=1) if c.variant == "ipo" else torch.ones_like(counts)
        policy_s, reference_s = policy / scale, reference / scale
        losses, chosen, rejected = dpo_loss(policy_s[0::2], policy_s[1::2], reference_s[0::2], reference_s[1::2],
                                            c.beta, c.variant, c.label_smoothing)
        if c.sft_weight:
            losses = losses - c.sft_weight * policy[0::2] / counts[0::2].clamp(min=1)
        if c.variant == "ipo":  # report rewards on summed log-probs, like the other variants
            chosen = c.beta * (policy[0::2] - reference[0::2]).detach()
            rejected = c.beta * (policy[1::2] - reference[1::2]).detach()
        loss_sum = losses.sum()
        return loss_sum, pair_parts(loss_sum, chosen, rejected)

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        return pair_report(parts)


def pair_parts(loss_sum, chosen, rejected) -> dict:
    """A pair objective's step parts: the summed loss and the (B,) detached rewards of both replies."""
    return {"loss_sum": loss_sum.item(), "pairs": len(chosen), "chosen_reward_sum": chosen.sum().item(),
            "rejected_reward_sum": rejected.sum().item(), "correct": int((chosen > rejected).sum())}


def pair_report(parts: list[dict]) -> dict:
    """Mean chosen and rejected rewards, their margin, and the fraction of pairs ranked right."""
    pairs = max(sum(p["pairs"] for p in parts), 1)
    chosen = sum(p["chosen_reward_sum"] for p in parts) / pairs
    rejected = sum(p["rejected_reward_sum"] for p in parts) / pairs
    return {"rewards_chosen": chosen, "rewards_rejected": rejected, "reward_margin": chosen - rejected,
            "pair_accuracy": sum(p["correct"] for p in parts) / pairs}


KIND = ObjectiveKind("dpo", Config, build, FORMATS)
