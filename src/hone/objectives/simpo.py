"""SimPO: simple preference optimisation, a length-normalised margin with no reference model (Meng et al. 2024).

On preference pairs: L = -log sigmoid(beta / |y_w| log pi(y_w|x) - beta / |y_l| log pi(y_l|x) - gamma)
(the paper's eq. 6): the implicit reward is the reply's mean token log-prob times beta, and gamma is
the target margin between them. Nothing is compared with a reference, so every method works
without a second pass; the paper's defaults are beta 2 to 2.5 with gamma / beta about 0.5.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field

from hone.config.base import Section
from hone.data.pairs import PAIR_FORMATS as FORMATS
from hone.objectives.base import Objective, ObjectiveKind, PairUnits
from hone.objectives.dpo import mean_log_probs, pair_parts, pair_report


class Config(Section):
    type: Literal["simpo"] = "simpo"
    beta: float = Field(2.0, gt=0, description="Scale of the length-normalised reward (the paper's 2 to 2.5).")
    gamma: float = Field(1.0, ge=0, description="Target reward margin between the chosen and rejected reply.")
    loss_chunk_tokens: int = Field(1024, gt=0, description="Target tokens per chunk of output-head logits.")


def build(config: Config) -> "SimPO":
    return SimPO(config)


def simpo_loss(chosen, rejected, beta: float, gamma: float):
    """Per-pair SimPO losses and rewards; chosen, rejected: (B,) mean token log-probs of each reply.

    loss = -log sigmoid(beta chosen - beta rejected - gamma).
    Returns (losses (B,), chosen_rewards (B,), rejected_rewards (B,)), rewards = beta * mean log-prob, detached.
    """
    chosen_rewards, rejected_rewards = beta * chosen, beta * rejected
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return losses, chosen_rewards.detach(), rejected_rewards.detach()


class SimPO(PairUnits, Objective):
    """Preference pairs in, SimPO loss out; the unit is a pair."""

    name = "simpo"

    def __init__(self, config: Config) -> None:
        self.config = config

    def loss(self, model, batch):
        means = mean_log_probs(model, batch, self.config.loss_chunk_tokens)
        losses, chosen, rejected = simpo_loss(means[0::2], means[1::2], self.config.beta, self.config.gamma)
        loss_sum = losses.sum()
        return loss_sum, pair_parts(loss_sum, chosen, rejected)

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        return pair_report(parts)


KIND = ObjectiveKind("simpo", Config, build, FORMATS)
