"""The checks of a fine-tuning job request's fields: each returns the value the service keeps, or
raises a `RequestError` whose `param` names the field."""

from __future__ import annotations

import re
from pathlib import Path

from hone.data.report import check_file as check_data_file
from hone.errors import RequestError
from hone.jobs.store import Store
from hone.models.load import context_length, load_tokenizer, resolve_model
from hone.models.registry import SHIPPED_MODELS

MIN_TRAINING_EXAMPLES = 10  # as OpenAI's fine-tuning API asks
FORMAT_NAMES = {"chat": "chat (ending with an assistant reply)", "graded_prompt": "prompts only (no reply)",
                "prompt_completion": "prompt/completion", "preference": "preference pairs"}
# Keys of `hone` (a request's hone-specific overrides) that the service owns.
RESERVED_KEYS = ("model", "name", "output_dir", "data.train", "data.validation", "data.image_files")


def check_model(model, param: str = "model") -> str:
    """`model` if hone can load it on this server (a shipped name, a model directory or a .gguf file)."""
    if not isinstance(model, str) or not model:
        raise RequestError(f"{param} is required: a shipped model name or a model directory on the server",
                           param=param)
    path = Path(model).expanduser()
    if model in SHIPPED_MODELS or (path.is_dir() and (path / "config.json").is_file()) or \
            (path.suffix == ".gguf" and path.is_file()):
        return model
    raise RequestError(f"unknown {param} {model!r}; use one of {', '.join(SHIPPED_MODELS)}, a model directory "
                       "or a .gguf file on the server", param=param, code="model_not_available")


def check_file(store: Store, project_id: str, file_id, param: str) -> dict:
    if not isinstance(file_id, str) or not file_id:
        raise RequestError(f"{param} is required: the id of an uploaded file", param=param)
    row = store.get_file(project_id, file_id)
    if row is None:
        raise RequestError(f"{param}: no file with id {file_id!r} in this project", param=param,
                           code="invalid_file")
    if row["purpose"] != "fine-tune":
        raise RequestError(f"{param}: file {file_id} has purpose {row['purpose']!r}, not 'fine-tune'",
                           param=param, code="invalid_file")
    return row


def check_formats(row: dict, formats: tuple[str, ...], method: str, param: str, *, minimum: int = 1) -> None:
    """The uploaded file's records fit the job's method (`formats`), and there are at least `minimum`."""
    report = row["report"] or {}
    wrong = sorted(set(report.get("formats") or {}) - set(formats), key=lambda f: (report.get("first_lines") or {})
                   .get(f, 0))
    if wrong:
        line = (report.get("first_lines") or {}).get(wrong[0])
        found = ", ".join(f"{report['formats'][f]} {FORMAT_NAMES.get(f, f)}" for f in wrong)
        raise RequestError(f"{param}: file {row['id']}{f' line {line}' if line else ''} is a "
                           f"{FORMAT_NAMES.get(wrong[0], wrong[0])} record (the file has {found} records); a "
                           f"{method} job trains on {' or '.join(FORMAT_NAMES.get(f, f) for f in formats)} records",
                           param=param, code=f"invalid_{param}")
    if report.get("valid", 0) < minimum:
        raise RequestError(f"{param}: file {row['id']} has {report.get('valid', 0)} examples; a job needs at least "
                           f"{minimum}", param=param, code=f"invalid_{param}")


def check_example_lengths(row: dict, model: str, param: str, loss_on: str = "assistant") -> None:
    """Every example of the file fits the model's context window (its max_position_embeddings), counted
    with the model's own tokenizer and chat template, as OpenAI limits the tokens of one example."""
    source = resolve_model(model)
    limit = context_length(source)
    if not limit:
        return
    report = check_data_file(row["path"], load_tokenizer(source), max_length=limit, loss_on=loss_on)
    if report.truncated:
        line, length = report.truncated[0]
        more = f" ({len(report.truncated)} examples are over)" if len(report.truncated) > 1 else ""
        raise RequestError(f"{param}: file {row['id']} line {line} has {length} tokens; {model} takes at most "
                           f"{limit} tokens per example{more}. Shorten or split the example", param=param,
                           code=f"invalid_{param}")


def check_suffix(suffix) -> str | None:
    if suffix is None:
        return None
    if not isinstance(suffix, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", suffix):
        raise RequestError("suffix must be 1 to 64 letters, digits, '-' or '_'", param="suffix")
    return suffix


def check_metadata(metadata) -> dict | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in metadata.items()):
        raise RequestError("metadata must map at most 16 keys (<= 64 chars) to strings (<= 512 chars)",
                           param="metadata")
    return metadata


def check_hone_overrides(hone) -> dict:
    if hone is None:
        return {}
    if not isinstance(hone, dict):
        raise RequestError("hone must map hone config keys to values, e.g. {\"train.max_steps\": 100}",
                           param="hone")
    for key in hone:
        if key in RESERVED_KEYS or any(key.startswith(r + ".") for r in RESERVED_KEYS):
            raise RequestError(f"hone.{key} is set by the service from the request", param=f"hone.{key}")
    return dict(hone)


def check_teacher(options: dict, param: str) -> dict:
    """A distill job's teacher: `teacher_base_url` (an OpenAI-compatible endpoint, http(s)://host/v1) and the
    `teacher_model` it serves; the job's worker asks it with its own $OPENAI_API_KEY, if set (a request
    carries no teacher key)."""
    url, model = options.get("teacher_base_url"), options.get("teacher_model")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RequestError(f"{param}.teacher_base_url is required: the base URL of an OpenAI-compatible endpoint, "
                           f"e.g. http://host:8000/v1 (got {url!r})", param=f"{param}.teacher_base_url")
    if not isinstance(model, str) or not model:
        raise RequestError(f"{param}.teacher_model is required: the name of the model the teacher endpoint serves",
                           param=f"{param}.teacher_model")
    return {"teacher_base_url": url, "teacher_model": model}
