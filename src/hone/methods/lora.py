"""LoRA through PEFT: low-rank updates on the chosen linear layers, saved in PEFT's adapter format.

Options `dora` (weight-decomposed LoRA, Liu et al. 2024) and `rslora` (alpha / sqrt(rank) scaling,
Kalajdzievski 2023) are PEFT's. `qlora` shares these options through `LoraOptions`.

`init_from: RUN` continues a trained LoRA (an SFT run before GRPO or DPO): its weights become the
trainable adapter, and a frozen copy of them is kept as the `hone_start` adapter so that objectives
with a reference policy compare against where training started (`hone.methods.reference_policy`),
not against the bare base. The copy costs the adapter's size, never the base's.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from hone.errors import ConfigError
from hone.methods.base import Method
from hone.methods.vision import VisionParts, linear_modules, part_roots, whole_parts
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.vision import is_vision


class LoraOptions(VisionParts):
    rank: int = Field(16, gt=0)
    """Rank r of each low-rank update (its two matrices are d x r and r x k)."""
    alpha: float = Field(32.0, gt=0)
    """Scaling numerator: the update is scaled by alpha / rank (alpha / sqrt(rank) with `rslora`)."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on the adapted layers' input to the low-rank path, in training only."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]) or every linear layer but the output head."""
    layers_to_transform: list[int] | None = None
    """Only these transformer block indices get adapters (default: every block)."""
    rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(rank), which keeps high ranks learning."""

    @field_validator("target_modules", mode="before")
    @classmethod
    def _all_linear_or_names(cls, value):
        if isinstance(value, str) and value != "all-linear":
            raise ValueError(f"{value!r}: give all-linear or a list of module names, e.g. [q_proj, v_proj]")
        return value

    @field_validator("target_modules")
    @classmethod
    def _some_targets(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("name at least one module, or use all-linear")
        return value

    @field_validator("layers_to_transform")
    @classmethod
    def _layer_indices(cls, value):
        if value is not None:
            if not value:
                raise ValueError("give at least one block index, or leave it unset for every block")
            if any(i < 0 for i in value):
                raise ValueError("block indices start at 0")
        return value


START_ADAPTER = "hone_start"


class Config(LoraOptions):
    type: Literal["lora"] = "lora"
    dora: bool = False
    """Weight-decomposed LoRA: a trainable magnitude per output channel beside the low-rank direction."""
    init_from: str | None = None
    """A run directory (or its adapter/) trained with LoRA on the same base: continue from its adapter
    (its rank, alpha and target modules are used; the options above are then ignored)."""


def linear_names(model) -> list[str]:
    """Short names of the linear layers in the model's blocks (what PEFT's all-linear means)."""
    import torch

    head = model.get_output_embeddings()
    return sorted({name.rpartition(".")[2] for name, m in model.get_decoder().named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not head})


def peft_config(model, config: LoraOptions, *, dora: bool = False):
    from peft import LoraConfig

    targets, layers, whole = config.target_modules, config.layers_to_transform, None
    if is_vision(model.config):  # the language model's linear layers, and the parts the config adds
        # one pattern of full names: PEFT saves a long list of names as their last parts, which on
        # reload would also match the same-named layers of the parts that did not train
        names = linear_modules(model, config, None if targets == "all-linear" else targets, layers)
        targets, layers = "|".join(re.escape(name) for name in names), None
        whole = part_roots(model, whole_parts(config)) or None  # trained whole, saved inside the adapter
    elif targets == "all-linear" and layers is not None:
        targets = linear_names(model)  # PEFT takes layers_to_transform only with a list of names
    return LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        layers_to_transform=layers,
        use_rslora=config.rslora,
        use_dora=dora,
        modules_to_save=whole,
        task_type="CAUSAL_LM",
    )


def check_layers(model, config: LoraOptions) -> None:
    """Block indices beyond the model's depth are an error, not a silently empty adapter."""
    depth = model.config.get_text_config().num_hidden_layers
    if config.layers_to_transform and max(config.layers_to_transform) >= depth:
        raise ConfigError(f"block index {max(config.layers_to_transform)} does not exist; the model has {depth} "
                          "blocks", where="method.layers_to_transform", hint=f"use indices 0..{depth - 1}")


def apply(model, config: Config):
    from peft import get_peft_model

    from hone.methods.fused_lora import (
        fuse,  # it subclasses peft's LoRA layer: importing it imports peft
    )

    if config.init_from:
        model = continue_from(model, config.init_from)
    else:
        check_layers(model, config)
        model = get_peft_model(model, peft_config(model, config, dora=config.dora))
    fuse(model)
    return model


def continue_from(model, run):
    """The adapter of `run` made trainable on `model`, plus a frozen copy of it as `hone_start`."""
    from peft import PeftModel

    directory = adapter_dir(run)
    method = read_manifest(directory).get("method", {}).get("type")
    if method != "lora":
        raise ConfigError(f"{run} was trained with method {method!r}; init_from needs a LoRA run",
                          where="method.init_from")
    model = PeftModel.from_pretrained(model, directory, is_trainable=True, low_cpu_mem_usage=True)
    model.load_adapter(directory, adapter_name=START_ADAPTER, is_trainable=False,
                       low_cpu_mem_usage=True)
    model.set_adapter("default")
    return model


def save(model, directory) -> None:
    model.save_pretrained(directory, selected_adapters=["default"])


def load(base, directory):
    from peft import PeftModel

    from hone.methods.fused_lora import fuse

    model = PeftModel.from_pretrained(base, directory, low_cpu_mem_usage=True).eval()
    fuse(model)
    return model


def merge(model):
    """The base with the low-rank update (and DoRA's magnitudes) folded into its weights."""
    return model.merge_and_unload()


def side_by_side(config: Config) -> bool:
    """Plain LoRA shares a batch with other adapters; DoRA's magnitudes need the layer's whole weight,
    and a part trained whole replaces the base's own."""
    return not config.dora and not whole_parts(config)


METHOD = Method("lora", Config, apply, save, load, adapter=True, merge=merge, side_by_side=side_by_side)
