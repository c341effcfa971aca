"""Load a base model from a shipped name, a Hugging Face directory, a `.gguf` file or a hub id.

GGUF files (the shipped default included) are de-quantized and converted once into a plain
transformers safetensors directory under `hone_home()/models/`, so later loads take seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hone.data.vision import attach_processor
from hone.errors import ModelError
from hone.models.registry import SHIPPED_MODELS, ShippedModel
from hone.models.vision import is_vision, load_processor, model_class
from hone.paths import hone_home


@dataclass(frozen=True)
class ModelSource:
    """What a model spec resolved to: `id` as the user named it, `path` a transformers directory
    (or the hub id itself), `sha256` a hash of its weights (None for hub ids until downloaded)."""

    id: str
    kind: str  # shipped | dir | gguf | hub
    path: str
    sha256: str | None


def resolve_model(spec: str) -> ModelSource:
    """Turn a model spec into a loadable directory, converting GGUF files once (cached)."""
    if spec in SHIPPED_MODELS:
        gguf = _shipped_gguf(SHIPPED_MODELS[spec])
        path = _converted_dir(gguf, hone_home() / "models" / spec)
        return ModelSource(spec, "shipped", str(path), _read_hash(path))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file {path} does not exist", where="model")
        target = hone_home() / "models" / f"gguf-{_file_sha256(path)[:16]}"
        converted = _converted_dir(path, target)
        return ModelSource(spec, "gguf", str(converted), _read_hash(converted))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a directory without config.json", where="model",
                             hint="point at a Hugging Face model directory (config.json + weights)")
        return ModelSource(spec, "dir", str(path), weights_sha256(path))
    if spec.count("/") == 1 and not path.exists() and not spec.startswith((".", "/", "~")):
        return ModelSource(spec, "hub", spec, None)
    raise ModelError(
        f"unknown model {spec!r}",
        where="model",
        hint=f"use a shipped model ({', '.join(SHIPPED_MODELS)}), a model directory, a .gguf file or a hub id",
    )


def context_length(source: ModelSource) -> int | None:
    """The longest sequence the model was built for (its config's max_position_embeddings), if it says."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(source.path), "max_position_embeddings", None)


def load_tokenizer(spec: str | ModelSource):
    """The model's tokenizer; a vision-language model's carries its processor (`hone.data.vision`)."""
    from transformers import AutoConfig, AutoTokenizer

    source = spec if isinstance(spec, ModelSource) else resolve_model(spec)
    try:
        if is_vision(AutoConfig.from_pretrained(source.path)):
            processor = load_processor(source.path)
            tokenizer = attach_processor(processor.tokenizer, processor)
            tokenizer.chat_template = tokenizer.chat_template or processor.chat_template
        else:
            tokenizer = AutoTokenizer.from_pretrained(source.path)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer: {exc}", where=source.id) from exc
    if source.kind in ("shipped", "gguf"):  # also mends a cache converted before align_special_tokens
        from transformers import AutoConfig

        align_special_tokens(tokenizer, AutoConfig.from_pretrained(source.path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: str | ModelSource, *, dtype: str = "float32"):
    """Load (model, tokenizer, source); the model is in eval mode with its weights frozen."""
    import torch
    from transformers import AutoConfig

    source = spec if isinstance(spec, ModelSource) else resolve_model(spec)
    try:
        auto = model_class(AutoConfig.from_pretrained(source.path))
        model = auto.from_pretrained(source.path, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the model: {exc}", where=source.id) from exc
    model.requires_grad_(False)
    model.eval()
    if source.kind == "hub" and source.sha256 is None:
        from huggingface_hub import snapshot_download

        snapshot = snapshot_download(source.id, local_files_only=True)
        source = ModelSource(source.id, source.kind, source.path, weights_sha256(Path(snapshot)))
    return model, load_tokenizer(source), source


def weights_sha256(directory: Path) -> str:
    """A hash of a model directory's weight files (sorted by name), cached beside them when writable."""
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    cache = directory / ".hone-sha256.json"
    try:
        cached = json.loads(cache.read_text())
        if cached["stamp"] == json.loads(json.dumps(stamp)):
            return cached["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        digest.update(bytes.fromhex(_file_sha256(p)))
    value = digest.hexdigest()
    try:
        cache.write_text(json.dumps({"stamp": stamp, "sha256": value}))
    except OSError:
        pass
    return value


def _read_hash(path: Path) -> str:
    return json.loads((path / "hone-source.json").read_text())["weights_sha256"]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _shipped_gguf(entry: ShippedModel) -> Path:
    spec = importlib.util.find_spec(entry.package)  # locate without importing (it imports a plugin host)
    if spec is None or spec.origin is None:
        raise ModelError(f"the package that ships {entry.name} is not installed", where="model",
                         hint=entry.install)
    path = Path(spec.origin).parent / entry.filename
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed package", where="model", hint=entry.install)
    return path


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _converted_dir(gguf: Path, target: Path) -> Path:
    """Convert a GGUF file into a transformers safetensors directory once; atomic and process-safe."""
    if (target / "hone-source.json").is_file():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if (target / "hone-source.json").is_file():
            return target
        print(f"hone: converting {gguf.name} to a cached safetensors model (once) ...", flush=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(gguf, tmp)
        (tmp / "hone-source.json").write_text(json.dumps({
            "gguf": str(gguf),
            "gguf_sha256": _file_sha256(gguf),
            "weights_sha256": weights_sha256(tmp),
        }, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read GGUF file: {exc}", where=str(gguf)) from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    align_special_tokens(tokenizer, config)
    tokenizer.save_pretrained(out)


def align_special_tokens(tokenizer, config) -> list[str]:
    """Give `tokenizer` the bos/eos/pad tokens whose ids `config` holds (read from the GGUF file's
    tokenizer.ggml.*_token_id); some transformers releases read a GGUF tokenizer's eos as its bos and
    no pad, and a model that never sees its end-of-turn token never stops. Returns what changed."""
    changed = []
    for kind in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{kind}_token_id", None)
        valid = isinstance(token_id, int) and 0 <= token_id < len(tokenizer)
        if valid and getattr(tokenizer, f"{kind}_token_id") != token_id:
            setattr(tokenizer, f"{kind}_token", tokenizer.convert_ids_to_tokens(token_id))
            changed.append(kind)
    return changed


def set_threads(threads: int | None) -> None:
    """Run torch on `threads` CPU threads (default: every core available to this process)."""
    import torch

    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
