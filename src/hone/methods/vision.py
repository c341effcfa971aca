"""What trains of a vision-language model: the language model always; the projector and the vision
tower when the method config says so (`train_projector`, `train_vision_tower`). Text-only models
have only a language model, so these options change nothing there."""

from __future__ import annotations

import re

from pydantic import Field

from hone.config.base import Section
from hone.errors import ConfigError
from hone.models.vision import is_vision, module_part


class VisionParts(Section):
    train_projector: bool = Field(False, description=(
        "Vision-language models: train the projector that maps image features into the language model "
        "(LoRA methods put adapters on its linear layers; full trains its weights). Off: it stays frozen."))
    train_vision_tower: bool = Field(False, description=(
        "Vision-language models: train the vision tower (image encoder) too (LoRA methods put adapters on its "
        "linear layers; full trains its weights). Off: it stays frozen, which keeps memory and data needs low."))


def trained_parts(config: VisionParts) -> set[str]:
    """The parts of a vision-language model a method config trains (`hone.models.vision.module_part`)."""
    return {"language_model"} | ({"projector"} if config.train_projector else set()) \
        | ({"vision_tower"} if config.train_vision_tower else set())


def linear_modules(model, config: VisionParts, short_names: list[str] | None = None,
                   blocks: list[int] | None = None) -> list[str]:
    """Full names of the linear layers of the trained parts (all but the output head; only those whose
    last name is in `short_names`, and language-model layers only in `blocks`, when given): a
    vision-language model's LoRA targets."""
    import torch

    head = model.get_output_embeddings()
    parts = trained_parts(config)
    names = sorted(name for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head and module_part(name) in parts
                   and (short_names is None or name.rpartition(".")[2] in short_names)
                   and (blocks is None or module_part(name) != "language_model" or block_index(name) in blocks))
    for part in parts:
        if not any(module_part(name) == part for name in names):
            option = {"projector": "train_projector", "vision_tower": "train_vision_tower"}.get(part, "target_modules")
            raise ConfigError(f"the {part.replace('_', ' ')} of this {model.config.model_type} model has no linear "
                              "layer a LoRA adapter could go on", where=f"method.{option}",
                              hint="train it with method=full, or leave the option off")
    return names


def block_index(name: str) -> int | None:
    """The transformer block a module name sits in (`...layers.3.self_attn.q_proj` -> 3), if any."""
    match = re.search(r"\.layers\.(\d+)\.", name)
    return int(match[1]) if match else None


def freeze_untrained_parts(model, config: VisionParts):
    """Every weight of the trained parts trains, the rest stays frozen (full fine-tuning of a
    vision-language model); a text-only model trains whole."""
    trained = trained_parts(config)
    vision = is_vision(model.config)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not vision or module_part(name) in trained)
    return model
