"""Full fine-tuning: every weight trains. The artifact is a complete transformers model directory
(config, weights, generation config, tokenizer with the training chat template, beside hone.json).

Memory is weights + gradients + optimizer state for every parameter (AdamW: two fp32 moments, i.e.
16 bytes per parameter with fp32 weights); `train.optimizer=adamw_8bit` keeps the moments in 8 bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import field_validator

from hone.errors import ModelError
from hone.methods.base import Method
from hone.methods.vision import VisionParts, freeze_untrained_parts
from hone.methods.weights import load_into
from hone.models.vision import is_vision


class Config(VisionParts):
    TRUE_MEANS: ClassVar[str] = "full"

    type: Literal["full"] = "full"

    @field_validator("train_projector", "train_vision_tower")
    @classmethod
    def _no_lora(cls, value):
        if value == "lora":
            raise ValueError("full fine-tuning trains a part whole: use full (or true), or a LoRA method for lora")
        return value


def apply(model, config: Config):
    return freeze_untrained_parts(model, config)


def save(model, directory) -> None:
    model.save_pretrained(directory)


def load(base, directory):
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise ModelError("no .safetensors weights here", where=str(directory))
    if is_vision(base.config):  # saved under the checkpoint names transformers maps to the module names
        return type(base).from_pretrained(str(directory), dtype=base.dtype).requires_grad_(False).eval()
    return load_into(base, files)


def merge(model):
    """Already a plain model: nothing to fold in."""
    return model


METHOD = Method("full", Config, apply, save, load, merge=merge, whole_model=True)
