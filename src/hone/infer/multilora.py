"""Many LoRA adapters in one base model, each batch row using its own (hone's mixed-adapter batches).

Every adapted `nn.Linear` is wrapped once; the wrapper keeps the loaded adapters' weights stacked
in slots (`A: (slots, r, in)`, `B: (slots, out, r)`, ranks zero-padded to the largest loaded
rank, slot 0 all zeros = the base). A forward pass gathers each row's slot and adds
`scale * (x @ A[row]^T) @ B[row]^T` with two batched matmuls, so its cost does not grow with the
number of distinct adapters in the batch. PEFT's mixed batches (`adapter_names=`) loop over the
distinct adapters in every layer instead: with 100 adapters in rotation they kept 16 % of the
single-adapter throughput in `bench/serve.py --tiny`.

Adapters are read from PEFT's files (adapter_config.json + adapter_model.safetensors); a batch
with one adapter for every row computes exactly what PEFT computes (same operations in the same
order), so greedy outputs equal `hone generate`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hone.errors import ModelError


class RowAdapters:
    """Which slot each row of the next forward passes uses: an int (every row) or a (B,) tensor."""

    def __init__(self) -> None:
        self.slots: int | torch.Tensor = 0


class MultiLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, rows: RowAdapters) -> None:
        super().__init__()
        self.base, self.rows = base, rows
        self.A = torch.zeros(1, 0, base.in_features, dtype=base.weight.dtype)
        self.B = torch.zeros(1, base.out_features, 0, dtype=base.weight.dtype)
        self.scale = torch.zeros(1, dtype=base.weight.dtype)
        self.rank_of: dict[int, int] = {}  # slot -> its adapter's own rank (the stacks are padded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        slots = self.rows.slots
        if isinstance(slots, int):
            if slots == 0 or self.scale[slots] == 0:
                return result
            rank = self.rank_of[slots]  # unpadded: the same computation as PEFT's LoRA layer
            a, b = self.A[slots, :rank], self.B[slots, :, :rank]
            return result + nn.functional.linear(nn.functional.linear(x, a), b) * self.scale[slots]
        a, b = self.A[slots], self.B[slots]  # (rows, r, in), (rows, out, r)
        h = torch.bmm(x, a.transpose(1, 2))
        return result + torch.bmm(h, b.transpose(1, 2)) * self.scale[slots].view(-1, 1, 1)

    def ensure(self, slots: int, rank: int) -> None:
        """Grow the stacks to hold `slots` slots of rank `rank` (zero padded)."""
        have_slots, have_rank = self.A.shape[0], self.A.shape[1]
        if slots <= have_slots and rank <= have_rank:
            return
        slots, rank = max(slots, have_slots), max(rank, have_rank)
        A = self.A.new_zeros(slots, rank, self.A.shape[2])
        B = self.B.new_zeros(slots, self.B.shape[1], rank)
        A[:have_slots, :have_rank] = self.A
        B[:have_slots, :, :have_rank] = self.B
        scale = self.scale.new_zeros(slots)
        scale[:have_slots] = self.scale
        self.A, self.B, self.scale = A, B, scale

    def put(self, slot: int, a: torch.Tensor | None, b: torch.Tensor | None, scale: float) -> None:
        self.A[slot].zero_()
        self.B[slot].zero_()
        self.scale[slot] = 0.0
        self.rank_of.pop(slot, None)
        if a is not None:
            self.rank_of[slot] = a.shape[0]
            self.A[slot, : a.shape[0]] = a
            self.B[slot, :, : b.shape[1]] = b
            self.scale[slot] = scale


class MultiLora:
    """The adapters loaded into one base model, by name, each in a slot of every wrapped layer."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.rows = RowAdapters()
        self.layers: dict[str, MultiLoraLinear] = {}
        self.slot_of: dict[str, int] = {}

    def add(self, name: str, directory: str | Path) -> int:
        """Load an adapter's weights into a free slot; returns the bytes its weights take."""
        weights, scale, rank = read_lora(Path(directory))
        slot = next(s for s in range(1, len(self.slot_of) + 2) if s not in self.slot_of.values())
        for module_name in weights:
            self._wrap(module_name, directory)
        for layer in self.layers.values():
            layer.ensure(slot + 1, rank)
        for module_name, layer in self.layers.items():
            a, b = weights.get(module_name, (None, None))
            layer.put(slot, a, b, scale)
        self.slot_of[name] = slot
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in weights.values())

    def remove(self, name: str) -> None:
        slot = self.slot_of.pop(name)
        for layer in self.layers.values():
            layer.put(slot, None, None, 0.0)

    def use(self, names: list[str | None]) -> None:
        """Route the next forward passes: row i through adapter names[i] (None = the base)."""
        slots = [self.slot_of[n] if n is not None else 0 for n in names]
        self.rows.slots = slots[0] if len(set(slots)) == 1 else torch.tensor(slots)

    def _wrap(self, module_name: str, directory) -> None:
        if module_name in self.layers:
            return
        parent_name, _, child = module_name.rpartition(".")
        try:
            parent = self.model.get_submodule(parent_name)
            module = getattr(parent, child)
        except AttributeError:
            raise ModelError(f"the adapter adapts {module_name!r}, which this base model does not have",
                             where=str(directory), hint="serve it on the base it was trained on") from None
        if not isinstance(module, nn.Linear):
            raise ModelError(f"the adapter adapts {module_name!r}, a {type(module).__name__}; only linear "
                             "layers can be served side by side", where=str(directory),
                             hint="merge it into the base with `hone export` and serve that")
        wrapped = MultiLoraLinear(module, self.rows)
        slots = max((layer.A.shape[0] for layer in self.layers.values()), default=1)
        rank = max((layer.A.shape[1] for layer in self.layers.values()), default=0)
        wrapped.ensure(slots, rank)
        setattr(parent, child, wrapped)
        self.layers[module_name] = wrapped


def read_lora(directory: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float, int]:
    """PEFT LoRA files → ({module name: (A (r, in), B (out, r))}, scale, rank)."""
    from safetensors.torch import load_file

    config = json.loads((directory / "adapter_config.json").read_text())
    files = [directory / "adapter_model.safetensors"]
    if not files[0].is_file():
        raise ModelError("no adapter_model.safetensors", where=str(directory))
    tensors = load_file(str(files[0]))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in key:
                module = key.split(marker)[0].removeprefix("base_model.model.")
                pairs.setdefault(module, {})[part] = value.float()
                break
        else:
            raise ModelError(f"the adapter holds {key!r}, which is not a LoRA weight hone can serve",
                             where=str(directory), hint="merge it into the base with `hone export` and serve that")
    rank = int(config["r"])
    if config.get("target_parameters"):
        raise ModelError(f"the adapter trains fused expert weights ({', '.join(config['target_parameters'])}), "
                         "which cannot be served side by side with other adapters", where=str(directory),
                         hint="merge it into its base (hone export --merge RUN --out DIR) and serve DIR")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError("per-layer ranks (rank_pattern/alpha_pattern) cannot be served side by side",
                         where=str(directory))
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / rank ** 0.5 if config.get("use_rslora") else alpha / rank
    return {m: (p["lora_A"], p["lora_B"]) for m, p in pairs.items()}, scale, rank
