"""LoRA through PEFT: low-rank updates on the chosen linear layers, saved in PEFT's adapter format."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hone.config.base import Section


class Config(Section):
    type: Literal["lora"] = "lora"
    rank: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    """Scaling numerator: the update is scaled by alpha / rank."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]) or every linear layer but the output head."""


def apply(model, config: Config):
    from peft import LoraConfig, get_peft_model

    peft_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def save(model, directory) -> None:
    model.save_pretrained(directory)


def load(base, directory):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, directory).eval()
