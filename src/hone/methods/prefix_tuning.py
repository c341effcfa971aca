"""Prefix tuning through PEFT (Li & Liang 2021): V trainable keys and values per layer that every token
attends to, optionally produced by a small MLP during training. Runs on hone's paths via `methods.virtual`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hone.config.base import Section
from hone.methods.base import Method
from hone.methods.virtual import attach, check_unpacked, load, save


class Config(Section):
    type: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(20, gt=0)
    """Length of the learned key/value prefix of every layer."""
    projection: bool = False
    """Reparameterise the prefix through a 2-layer MLP while training (the paper's trick for stability)."""
    projection_hidden: int | None = Field(None, gt=0)
    """The MLP's hidden width (default: the model's hidden size); needs `projection`."""

    @model_validator(mode="after")
    def _hidden_needs_projection(self):
        if self.projection_hidden is not None and not self.projection:
            raise ValueError("projection_hidden needs projection=true")
        return self


def apply(model, config: Config):
    from peft import PrefixTuningConfig, get_peft_model

    kwargs = {"encoder_hidden_size": config.projection_hidden} if config.projection_hidden else {}
    peft_config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens,
                                     prefix_projection=config.projection, **kwargs)
    return attach(get_peft_model(model, peft_config))


METHOD = Method("prefix_tuning", Config, apply, save, load, adapter=True, check_run=check_unpacked)
