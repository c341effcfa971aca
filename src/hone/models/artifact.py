"""The tuned-model artifact: the method's files (PEFT's format for LoRA) plus `hone.json`.

`hone.json` makes the folder self-describing: the base model's id and weight hash, the chat
template used in training (serving renders prompts with the same one), method, objective, metrics.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from hone.errors import ModelError
from hone.models.vision import save_tokenizer
from hone.version import __version__

MANIFEST = "hone.json"


def write_artifact(directory: Path, model, method, config, source, tokenizer, metrics: dict, *,
                   objective=None, data=None) -> Path:
    """Write atomically: a half-written artifact never replaces a complete one.

    The objective adds what it trained beside the method (a reward or class head) and what hone.json
    must remember about the data (class labels) to `objective` in the manifest.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    method.save(model, tmp)
    if method.whole_model:  # loadable by any transformers code, tokenizer included
        save_tokenizer(tokenizer, tmp)
    objective_state = config.objective.model_dump(mode="json")
    if objective is not None:
        objective.save(model, tmp)
        objective_state.update(objective.manifest(data))
    manifest = {
        "format": "hone-artifact/1",
        "hone_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base_model": {"id": source.id, "kind": source.kind, "sha256": source.sha256},
        "chat_template": tokenizer.chat_template,
        "method": config.method.model_dump(mode="json"),
        "objective": objective_state,
        "data": {"train": config.data.train, "validation": config.data.validation,
                 "max_length": config.data.max_length, "loss_on": config.data.loss_on,
                 "chat_template": config.data.chat_template, "reasoning": config.data.reasoning},
        "metrics": metrics,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    os.rename(tmp, directory)
    return directory


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no {MANIFEST} here: not a hone adapter", where=str(directory),
                         hint="pass a run directory or its adapter/ folder") from None
    except ValueError as exc:
        raise ModelError(f"{MANIFEST} is not valid JSON: {exc}", where=str(path)) from None


def update_metrics(directory: Path, metrics: dict) -> None:
    manifest = read_manifest(directory)
    update_manifest(directory, {"metrics": {**manifest.get("metrics", {}), **metrics}})


def update_manifest(directory: Path, fields: dict) -> None:
    """Set top-level fields of hone.json (atomically)."""
    manifest = {**read_manifest(directory), **fields}
    tmp = Path(directory) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, Path(directory) / MANIFEST)


def adapter_dir(path: str | Path) -> Path:
    """Accept a run directory or the adapter folder itself."""
    path = Path(path)
    if (path / "adapter" / MANIFEST).is_file():
        return path / "adapter"
    if (path / MANIFEST).is_file():
        return path
    raise ModelError("not a hone run or adapter directory", where=str(path),
                     hint="expected RUN/adapter/hone.json (written when `hone train` finishes)")
