"""Trained weights of a plain transformers model in safetensors: written by name, loaded onto a base."""

from __future__ import annotations

from pathlib import Path

from hone.errors import ModelError


def save_trainable(model, path: Path) -> None:
    """Every trainable parameter under its state-dict name (tied weights once, by their first name)."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().float().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})


def load_into(base, files: list[Path]):
    """Copy saved tensors into `base` (names must exist there); the model is returned in eval mode."""
    import torch
    from safetensors.torch import load_file

    params = dict(base.named_parameters())
    params.update(dict(base.named_buffers()))
    for file in files:
        for name, tensor in load_file(str(file)).items():
            if name not in params:
                raise ModelError(f"saved tensor {name!r} does not exist in the base model", where=str(file),
                                 hint="load these weights on the base model they were trained from")
            target = params[name]
            if target.shape != tensor.shape:
                raise ModelError(f"saved tensor {name!r} has shape {tuple(tensor.shape)}, the base "
                                 f"{tuple(target.shape)}", where=str(file))
            with torch.no_grad():
                target.data = tensor.to(target.dtype)
    return base.eval()
