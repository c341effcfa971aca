"""Reward model: a scalar head on the model's last token, trained with the Bradley-Terry pairwise loss.

Trained on the same preference pairs as DPO: both replies of a pair are scored in one forward pass
and the loss is -log sigmoid(score(chosen) - score(rejected)) (Ouyang et al. 2022, eq. 1). The head
trains together with the method's parameters and is saved as `head.safetensors` in the artifact;
`hone score` (`hone.api.score`) loads it back to score prompts with their responses.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from hone.config.base import Section
from hone.data.batching import Batching
from hone.data.collate import collate_sequences
from hone.data.pairs import PAIR_FORMATS as FORMATS
from hone.models.heads import attach_head, save_head
from hone.objectives.base import Objective, ObjectiveKind, PairUnits
from hone.objectives.dpo import pair_report
from hone.objectives.heads import head_outputs


class Config(Section):
    type: Literal["reward"] = "reward"


def build(config: Config) -> "RewardModel":
    return RewardModel()


def bradley_terry_loss(chosen_scores, rejected_scores):
    """Per-pair -log sigmoid(chosen - rejected); scores (B,)."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


class RewardModel(PairUnits, Objective):
    """Preference pairs in, pairwise loss out; the unit is a pair."""

    name = "reward"

    def attach(self, model, data):
        return attach_head(model, 1)

    def save(self, model, directory) -> None:
        save_head(model, directory)

    def manifest(self, data) -> dict:
        return {"head": "head.safetensors"}

    def loss(self, model, batch):
        scores = head_outputs(model, batch)[:, 0]  # (2B,): chosen, rejected, chosen, ...
        chosen, rejected = scores[0::2], scores[1::2]
        loss_sum = bradley_terry_loss(chosen, rejected).sum()
        chosen, rejected = chosen.detach(), rejected.detach()
        return loss_sum, {"loss_sum": loss_sum.item(), "pairs": len(chosen),
                          "chosen_reward_sum": chosen.sum().item(), "rejected_reward_sum": rejected.sum().item(),
                          "correct": int((chosen > rejected).sum())}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        return pair_report(parts)


@torch.no_grad()
def score_sequences(model, examples, pad_id: int, batch_size: int = 16) -> list[list[float]]:
    """The head's outputs for tokenized sequences (one padded row each), `batch_size` at a time."""
    plain = Batching(pad_id)  # one padded row per sequence
    model.eval()
    out: list[list[float]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = collate_sequences(chunk, [[i] for i in range(len(chunk))], plain)
        out += head_outputs(model, batch).tolist()
    return out


KIND = ObjectiveKind("reward", Config, build, FORMATS)
