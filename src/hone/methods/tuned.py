"""Load a tuned artifact (its base, the method's weights, a trained head) or a base model, for inference.

It sits beside the methods' registry because loading asks the method the artifact names; the
artifact's manifest itself (`hone.models.artifact`) stays in the ground layer.
"""

from __future__ import annotations

from pathlib import Path

from hone.errors import HoneError, ModelError
from hone.methods import method_for
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.heads import load_head
from hone.models.load import load_model, set_threads
from hone.models.registry import DEFAULT_MODEL


def load_tuned(path: str | Path):
    """(model, tokenizer, manifest) for a tuned artifact: its base, then the method's weights on top,
    then the head hone.json names (a reward model's or a classifier's).

    The base's weights hash is checked against the one recorded at training time.
    """
    directory = adapter_dir(path)
    manifest = read_manifest(directory)
    base = manifest["base_model"]
    model, tokenizer, source = load_model(base["id"])
    if base.get("sha256") and source.sha256 and base["sha256"] != source.sha256:
        raise ModelError(f"base model {base['id']!r} differs from the one this adapter was trained on",
                         where=str(directory), hint="load the adapter on the exact base it was trained from")
    if manifest.get("chat_template"):
        tokenizer.chat_template = manifest["chat_template"]
    model = method_for(manifest["method"]["type"]).load(model, directory)
    if manifest.get("objective", {}).get("head"):  # a reward or class head trained beside the method
        model = load_head(model, directory)
    return model, tokenizer, manifest


def load_for_inference(*, adapter=None, model: str | None = None, threads: int | None = None):
    """(model, tokenizer) for a tuned artifact or a base model spec (the default model if neither);
    torch uses `threads` CPU threads (default: every core available)."""
    set_threads(threads)
    if adapter is not None:
        if model is not None:
            raise HoneError("give an adapter or a model, not both", where="--model",
                            hint="an adapter already names its base model in hone.json")
        loaded, tokenizer, _ = load_tuned(adapter)
        return loaded, tokenizer
    loaded, tokenizer, _ = load_model(model or DEFAULT_MODEL)
    return loaded, tokenizer
