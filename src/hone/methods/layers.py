"""Selective layer tuning: only chosen transformer blocks (or modules inside them) train.

Choose blocks by `top_k` (the last k, nearest the output) or by `indices`; inside them, `modules`
picks all weights, only attention, only the MLP, or glob patterns on parameter names relative to
the block (e.g. `self_attn.q_proj.*`). The embeddings and the output head can train too. The
artifact is `trained.safetensors` (the trained tensors under their model names) and `hone.json`.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hone.config.base import Section
from hone.errors import ConfigError
from hone.methods.base import Method
from hone.methods.weights import load_into, save_trainable

WEIGHTS = "trained.safetensors"
MODULE_PATTERNS = {"all": ["*"], "attention": ["self_attn.*"], "mlp": ["mlp.*"]}


class Config(Section):
    type: Literal["layers"] = "layers"
    top_k: int | None = Field(None, gt=0)
    """Train the last k blocks (exclusive with `indices`; with neither, every block)."""
    indices: list[int] | None = None
    """Train these block indices (negative counts from the end: -1 is the last block)."""
    modules: list[str] | Literal["all", "attention", "mlp"] = "all"
    """Inside the chosen blocks: all weights, attention only, MLP only, or glob patterns on names
    relative to the block (`self_attn.q_proj.*`, `*layernorm*`)."""
    embeddings: bool = False
    """Also train the input embeddings."""
    head: bool = False
    """Also train the output head (with tied embeddings, the head *is* the embeddings: set both)."""

    @field_validator("indices")
    @classmethod
    def _some_indices(cls, value):
        if value is not None and not value:
            raise ValueError("give at least one block index, or leave it unset")
        return value

    @field_validator("modules", mode="before")
    @classmethod
    def _known_choice(cls, value):
        if isinstance(value, str) and value not in MODULE_PATTERNS:
            raise ValueError(f"{value!r} is not all | attention | mlp; for patterns give a list, e.g. [self_attn.*]")
        return value

    @field_validator("modules")
    @classmethod
    def _some_patterns(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("give at least one pattern, or all | attention | mlp")
        return value

    @model_validator(mode="after")
    def _one_block_choice(self):
        if self.top_k is not None and self.indices is not None:
            raise ValueError("set top_k or indices, not both")
        return self


def chosen_blocks(config: Config, depth: int) -> list[int]:
    if config.top_k is not None:
        if config.top_k > depth:
            raise ConfigError(f"top_k={config.top_k} but the model has {depth} blocks", where="method.top_k",
                              hint=f"use 1..{depth}")
        return list(range(depth - config.top_k, depth))
    if config.indices is None:
        return list(range(depth))
    bad = [i for i in config.indices if not -depth <= i < depth]
    if bad:
        raise ConfigError(f"block indices {bad} do not exist; the model has {depth} blocks",
                          where="method.indices", hint=f"use 0..{depth - 1} (or -1 for the last)")
    return sorted({i % depth for i in config.indices})


def apply(model, config: Config):
    blocks = model.get_decoder().layers
    patterns = MODULE_PATTERNS.get(config.modules) if isinstance(config.modules, str) else config.modules
    matched = set()
    for index in chosen_blocks(config, len(blocks)):
        for name, param in blocks[index].named_parameters():
            hits = [p for p in patterns if fnmatch.fnmatchcase(name, p)]
            if hits:
                param.requires_grad_(True)
                matched.update(hits)
    unmatched = [p for p in patterns if p not in matched]
    if unmatched:
        example = next(iter(dict(blocks[0].named_parameters())))
        raise ConfigError(f"patterns {unmatched} match no parameter of the chosen blocks", where="method.modules",
                          hint=f"patterns are relative to a block, e.g. {example!r}")
    _embeddings_and_head(model, config)
    return model


def _embeddings_and_head(model, config: Config) -> None:
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    if embed is head and config.embeddings != config.head:
        raise ConfigError("this model ties its output head to its input embeddings", where="method.head",
                          hint="set method.embeddings and method.head to the same value")
    if config.embeddings:
        embed.requires_grad_(True)
    if config.head:
        head.requires_grad_(True)


def save(model, directory) -> None:
    save_trainable(model, Path(directory) / WEIGHTS)


def load(base, directory):
    return load_into(base, [Path(directory) / WEIGHTS])


def merge(model):
    """Already a plain model with the trained tensors in place."""
    return model


METHOD = Method("layers", Config, apply, save, load, merge=merge)
