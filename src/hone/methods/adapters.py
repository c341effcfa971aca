"""Bottleneck adapters: small down-project / nonlinearity / up-project modules inside a frozen model.

Houlsby et al. 2019 put one after the attention and one after the MLP of every block; Pfeiffer et
al. 2020 only after the MLP. Each adapter adds `up(act(down(x)))` to the sublayer's output before
its residual connection; `up` starts at zero, so training starts from the base model exactly. They
hang off each block as `hone_adapter_attn` / `hone_adapter_mlp` and act through forward hooks on
the block's `self_attn` / `mlp`, so the base's own modules and names are untouched.

Saved as hone's format: `adapters.safetensors` (tensors named `<block index>.<attn|mlp>.<down|up>.
<weight|bias>`) and `adapters.json` (style, reduction_factor, hidden size, activation, blocks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from hone.config.base import Section
from hone.errors import ConfigError, ModelError
from hone.methods.base import Method

WEIGHTS, SETTINGS = "adapters.safetensors", "adapters.json"
PLACES = {"houlsby": ("attn", "mlp"), "pfeiffer": ("mlp",)}
ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}


class Config(Section):
    type: Literal["adapters"] = "adapters"
    style: Literal["houlsby", "pfeiffer"] = "houlsby"
    """houlsby: after attention and after the MLP; pfeiffer: after the MLP only."""
    reduction_factor: int = Field(16, gt=0)
    """Bottleneck width = hidden size / reduction_factor."""
    activation: Literal["relu", "gelu", "silu"] = "relu"
    """The non-linearity between each bottleneck's down- and up-projection."""
    layers: list[int] | None = None
    """Blocks that get adapters (default: every block)."""

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, value):
        if value is not None and (not value or any(i < 0 for i in value)):
            raise ValueError("give block indices >= 0, or leave it unset for every block")
        return value


class Bottleneck(torch.nn.Module):
    """x -> x + up(act(down(x))), with `up` zero-initialised (the identity at first)."""

    def __init__(self, hidden: int, width: int, activation: str) -> None:
        super().__init__()
        self.down = torch.nn.Linear(hidden, width)
        self.act = ACTIVATIONS[activation]()
        self.up = torch.nn.Linear(width, hidden)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(self.act(self.down(x.to(self.down.weight.dtype)))).to(x.dtype)


def _after(adapter):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (adapter(output[0]), *output[1:])
        return adapter(output)
    return hook


def insert(model, settings: dict) -> dict[str, Bottleneck]:
    """Attach adapters per `settings` (the adapters.json content); returns them by saved name."""
    blocks = model.get_decoder().layers
    hidden = model.config.hidden_size
    width = max(1, hidden // settings["reduction_factor"])
    chosen = settings["layers"] if settings["layers"] is not None else list(range(len(blocks)))
    if max(chosen) >= len(blocks):
        raise ConfigError(f"block {max(chosen)} does not exist; the model has {len(blocks)} blocks",
                          where="method.layers", hint=f"use 0..{len(blocks) - 1}")
    made = {}
    for index in chosen:
        block = blocks[index]
        for place in PLACES[settings["style"]]:
            sublayer = getattr(block, "self_attn" if place == "attn" else "mlp", None)
            if sublayer is None:
                raise ConfigError(f"block {index} has no {'self_attn' if place == 'attn' else 'mlp'} module",
                                  where="method", hint="bottleneck adapters need Llama-style blocks")
            adapter = Bottleneck(hidden, width, settings["activation"])
            block.add_module(f"hone_adapter_{place}", adapter)
            sublayer.register_forward_hook(_after(adapter))
            made[f"{index}.{place}"] = adapter
    return made


def _settings(config: Config, model) -> dict:
    return {"style": config.style, "reduction_factor": config.reduction_factor, "activation": config.activation,
            "layers": config.layers, "hidden_size": model.config.hidden_size}


def apply(model, config: Config):
    for adapter in insert(model, _settings(config, model)).values():
        adapter.requires_grad_(True)
    model.hone_adapters = _settings(config, model)
    return model


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    out = {}
    for index, block in enumerate(model.get_decoder().layers):
        for place in ("attn", "mlp"):
            adapter = getattr(block, f"hone_adapter_{place}", None)
            if adapter is not None:
                for name, tensor in adapter.state_dict().items():
                    out[f"{index}.{place}.{name}"] = tensor.detach().float().contiguous()
    return out


def save(model, directory) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_tensors(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    (directory / SETTINGS).write_text(json.dumps(model.hone_adapters, indent=2))


def load(base, directory):
    from safetensors.torch import load_file

    directory = Path(directory)
    settings = json.loads((directory / SETTINGS).read_text())
    if settings["hidden_size"] != base.config.hidden_size:
        raise ModelError(f"adapters were made for hidden size {settings['hidden_size']}, the base has "
                         f"{base.config.hidden_size}", where=str(directory))
    adapters = insert(base, settings)
    tensors = load_file(str(directory / WEIGHTS))
    for key, adapter in adapters.items():
        adapter.load_state_dict({n.removeprefix(key + "."): t for n, t in tensors.items()
                                 if n.startswith(key + ".")})
    base.hone_adapters = settings
    return base.eval()


METHOD = Method("adapters", Config, apply, save, load)
