"""ORPO: odds-ratio preference optimisation, SFT and preference in one loss, no reference model (Hong et al. 2024).

On preference pairs: L = NLL(chosen) + lambda * L_OR (lambda is `beta` here), with L_OR = -log sigmoid(log odds(y_w) - log odds(y_l))
and odds(y) = P(y|x) / (1 - P(y|x)), where log P(y|x) is the reply's mean token log-prob (the paper's
eqs. 4-7). Nothing is compared with a reference, so every method works without a second pass.
Where hone departs from the paper: the NLL is each pair's chosen reply's mean token NLL, averaged
over pairs (the paper averages over the batch's tokens), so each pair weighs the same.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from hone.config.base import Section
from hone.data.pairs import PAIR_FORMATS as FORMATS
from hone.objectives.base import Objective, ObjectiveKind, PairUnits
from hone.objectives.dpo import mean_log_probs, pair_parts, pair_report


class Config(Section):
    type: Literal["orpo"] = "orpo"
    beta: float = Field(0.1, gt=0, description="lambda: the weight of the odds-ratio term beside the chosen "
                                               "reply's NLL (the paper's 0.1 to 1); named beta as DPO's strength is, "
                                               "so a fine-tuning job's dpo beta sets it.")
    loss_chunk_tokens: int = Field(1024, gt=0, description="Target tokens per chunk of output-head logits.")


def build(config: Config) -> "ORPO":
    return ORPO(config)


def log1mexp(x):
    """log(1 - exp(x)) for x < 0, accurate near 0 and far below it."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(chosen, rejected, weight: float):
    """Per-pair ORPO losses and log odds ratios; chosen, rejected: (B,) mean token log-probs of each reply.

    log_odds = (chosen - rejected) - (log(1 - e^chosen) - log(1 - e^rejected))
    loss = -chosen - weight * log sigmoid(log_odds)
    Returns (losses (B,), log_odds (B,) detached).
    """
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    return -chosen - weight * F.logsigmoid(log_odds), log_odds.detach()


class ORPO(PairUnits, Objective):
    """Preference pairs in, NLL plus odds-ratio loss out; the unit is a pair."""

    name = "orpo"

    def __init__(self, config: Config) -> None:
        self.config = config

    def loss(self, model, batch):
        means = mean_log_probs(model, batch, self.config.loss_chunk_tokens)
        losses, log_odds = orpo_loss(means[0::2], means[1::2], self.config.beta)
        loss_sum = losses.sum()
        parts = pair_parts(loss_sum, means[0::2].detach(), means[1::2].detach())
        return loss_sum, {**parts, "log_odds_sum": log_odds.sum().item()}

    def report(self, parts: list[dict], loss: float, *, validation: bool) -> dict:
        """Rewards are the mean token log-probs of each reply; `log_odds_ratio` the mean odds-ratio term."""
        pairs = max(sum(p["pairs"] for p in parts), 1)
        return {**pair_report(parts), "log_odds_ratio": sum(p["log_odds_sum"] for p in parts) / pairs}


KIND = ObjectiveKind("orpo", Config, build, FORMATS)
