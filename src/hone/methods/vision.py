"""What trains of a vision-language model: the language model always; the projector and the vision
tower when the method config says so (`train_projector`, `train_vision_tower`), each either through
LoRA on its linear layers or whole (every weight, saved inside the adapter beside the LoRA weights).
Text-only models have only a language model, so these options change nothing there."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hone.config.base import Section
from hone.errors import ConfigError
from hone.models.vision import is_vision, module_part

PartTraining = Literal[False, True, "lora", "full"]
OPTIONS = {"projector": "train_projector", "vision_tower": "train_vision_tower"}


class VisionParts(Section):
    TRUE_MEANS: ClassVar[str] = "lora"  # what `true` means for the method: its own way of training a part

    train_projector: PartTraining = Field(False, description=(
        "Vision-language models: train the projector that maps image features into the language model. "
        "`lora`: LoRA adapters on its linear layers (LoRA methods only); `full`: every weight of it trains "
        "and is saved inside the adapter beside the LoRA weights (what a new, untrained projector needs); "
        "`true`: the method's own way (lora for LoRA methods, full for full); false: it stays frozen."))
    train_vision_tower: PartTraining = Field(False, description=(
        "Vision-language models: train the vision tower (image encoder) too. `lora`: LoRA adapters on its "
        "linear layers (LoRA methods only); `full`: every weight of it trains and is saved inside the adapter "
        "(what a randomly initialised tower needs; the adapter then carries the tower's size and is served "
        "merged, not beside other adapters); `true`: the method's own way (lora for LoRA methods, full for "
        "full); false: it stays frozen, which keeps memory and data needs low."))

    @model_validator(mode="after")
    def _true_is_the_methods_own_way(self):
        for option in OPTIONS.values():
            if getattr(self, option) is True:
                object.__setattr__(self, option, self.TRUE_MEANS)
        return self


def part_training(config: VisionParts) -> dict[str, str]:
    """How each trained part of a vision-language model trains: "lora" or "full" (the language model
    by the method itself, given here as "lora"; full fine-tuning ignores it)."""
    chosen = {part: getattr(config, option) for part, option in OPTIONS.items()}
    return {"language_model": "lora"} | {part: how for part, how in chosen.items() if how}


def trained_parts(config: VisionParts) -> set[str]:
    """The parts of a vision-language model a method config trains (`hone.models.vision.module_part`)."""
    return set(part_training(config))


def whole_parts(config: VisionParts) -> set[str]:
    """The parts a LoRA method config trains whole (`full`) beside its LoRA weights."""
    return {part for part, how in part_training(config).items() if how == "full"}


def part_roots(model, parts: set[str]) -> list[str]:
    """Full names of the outermost modules of these parts (`model.vision_model`, `model.connector`): the
    modules that train whole. A part nested in another (Qwen2.5-VL's merger in its vision tower) trains
    with it."""
    roots: list[str] = []
    for name, _ in model.named_modules():  # parents come before their children
        if name and module_part(name) in parts and not any(name.startswith(root + ".") for root in roots):
            roots.append(name)
    return roots


def linear_modules(model, config: VisionParts, short_names: list[str] | None = None,
                   blocks: list[int] | None = None) -> list[str]:
    """Full names of the linear layers of the parts trained through LoRA (all but the output head and
    those inside a part trained whole; only those whose last name is in `short_names`, and
    language-model layers only in `blocks`, when given): a vision-language model's LoRA targets."""
    import torch

    head = model.get_output_embeddings()
    parts = {part for part, how in part_training(config).items() if how == "lora"}
    whole = part_roots(model, whole_parts(config))
    names = sorted(name for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not head and module_part(name) in parts
                   and (short_names is None or name.rpartition(".")[2] in short_names)
                   and (blocks is None or module_part(name) != "language_model" or block_index(name) in blocks))
    for part in parts:
        if not any(module_part(name) == part for name in names):
            option = OPTIONS.get(part, "target_modules")
            raise ConfigError(f"the {part.replace('_', ' ')} of this {model.config.model_type} model has no linear "
                              "layer a LoRA adapter could go on", where=f"method.{option}",
                              hint=f"train it whole with method.{option}=full, or leave the option off"
                              if part in OPTIONS else "name linear layers of the language model")
    return [name for name in names if not any(name.startswith(root + ".") for root in whole)]


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
