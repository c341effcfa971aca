"""Checkpoints that a kill cannot corrupt: written to a temporary folder, then renamed.

Layout: `checkpoints/step-N/{trainable.safetensors, optimizer.pt, state.json}` plus
`checkpoints/latest` naming the newest complete one. Only trainable parameters are stored, whole and
keyed by name (the optimizer state too, via torch.distributed.checkpoint's full state dicts): a
checkpoint written by N processes (DDP or FSDP) resumes on any number of them. Under several
processes every rank calls save (the gathering is collective) and rank 0 writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hone.models.artifact import write_artifact
from hone.train.distributed import barrier, full_optimizer_state, full_trainable_state, is_main, load_full_state


def save_checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, state: dict, scaler=None, *,
                    keep: int = 1) -> Path:
    """Write step `step`'s checkpoint and keep only the newest `keep` (at least this one)."""
    weights = full_trainable_state(model)
    optimizer_state = full_optimizer_state(model, optimizer)
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step}"
    if is_main():
        _write(root, final, step, weights, optimizer_state, scheduler, state, scaler, max(keep, 1))
    barrier()
    return final


def _write(root: Path, final: Path, step: int, weights, optimizer_state, scheduler, state, scaler, keep: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, tmp / "trainable.safetensors")
    torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    for f in tmp.iterdir():
        _fsync(f)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    _write_atomic(root / "latest", final.name)
    for old in sorted(_complete(root), key=_step_of)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """At the end of a run: keep the newest `keep` step checkpoints; with none left, the whole folder goes
    (the best evaluation's weights serve only a resume, and the artifact already holds them)."""
    root = Path(run_dir) / "checkpoints"
    done = sorted(_complete(root), key=_step_of)
    for old in done[:len(done) - keep]:
        shutil.rmtree(old, ignore_errors=True)
    if not _complete(root):
        shutil.rmtree(root, ignore_errors=True)
def write_checkpoint_model(run_dir: Path, step: int, keep: int, model, method, config, source, tokenizer,
                           metrics: dict, **artifact_options) -> Path:
    """The model at `step` as a servable artifact, RUN/checkpoint_models/step-N (like RUN/adapter); only the
    newest `keep` stay."""
    root = Path(run_dir) / "checkpoint_models"
    folder = write_artifact(root / f"step-{step}", model, method, config, source, tokenizer,
                            {**metrics, "step": step}, **artifact_options)
    kept = sorted((p for p in root.glob("step-*") if p.name.split("-")[1].isdigit()), key=_step_of)
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file() and (root / pointer.read_text().strip() / "state.json").is_file():
        return root / pointer.read_text().strip()
    done = sorted(_complete(root), key=_step_of)
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler, scaler=None) -> dict:
    """Restore trainable weights, optimizer, schedule and RNG; returns the saved loop state."""
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise KeyError(f"checkpoint has parameters the model lacks: {missing[:3]}")
    extra = torch.load(path / "optimizer.pt", weights_only=False, map_location="cpu")
    load_full_state(model, optimizer, weights, extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    if scaler is not None and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(extra["torch_rng"])
    return json.loads((path / "state.json").read_text())


def _complete(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.glob("step-*") if (p / "state.json").is_file()]


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    _fsync(tmp)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
