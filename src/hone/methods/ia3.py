"""IA3 through PEFT: learned per-channel scales on keys, values and the MLP's down projection
(Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper"); PEFT's format."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from hone.config.base import Section
from hone.methods.base import Method


class Config(Section):
    type: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    """Modules whose activations are scaled (default: PEFT's choice for the architecture, e.g.
    k_proj, v_proj, down_proj for Llama)."""
    feedforward_modules: list[str] | None = None
    """Which of `target_modules` are feed-forward layers (scaled on their input, not their output)."""

    @model_validator(mode="after")
    def _feedforward_within_targets(self):
        if self.feedforward_modules is not None:
            if self.target_modules is None:
                raise ValueError("feedforward_modules needs target_modules too")
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if extra:
                raise ValueError(f"feedforward_modules {extra} are not in target_modules")
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target_modules: name at least one module, or leave it unset")
        return self


def apply(model, config: Config):
    from peft import IA3Config, get_peft_model

    kwargs = {}
    if config.target_modules is not None:
        kwargs = {"target_modules": config.target_modules, "feedforward_modules": config.feedforward_modules or []}
    return get_peft_model(model, IA3Config(task_type="CAUSAL_LM", **kwargs))


def save(model, directory) -> None:
    model.save_pretrained(directory)


def load(base, directory):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, directory).eval()


def merge(model):
    """The base with each learned scale multiplied into its weight."""
    return model.merge_and_unload()


METHOD = Method("ia3", Config, apply, save, load, adapter=True, merge=merge)
