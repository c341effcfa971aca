"""OpenAI's grader objects (a reinforcement job's `method.reinforcement.grader`) as hone grader specs.

| OpenAI `type` | hone grader (`hone.rewards`) |
|---|---|
| `string_check` (`input`, `reference`, `operation`) | `string_check`, the same fields |
| `text_similarity` (`evaluation_metric`, `pass_threshold`) | `text_similarity` (fuzzy_match, bleu, rouge_l) |
| `python` (`source` defining `grade(sample, item)`) | `python`: the source saved as `<run dir>/graders/<name>.py`, run in hone's sandbox (only with `--allow-python-graders`) |
| `score_model` (`model`, `input`, `range`, `sampling_params.max_completions_tokens`) | `score_model` (hone's judge) |
| `label_model` (`model`, `input`, `labels`, `passing_labels`) | `label_model` |
| `multi` (`graders`, `calculate_output`) | `multi`, each grader mapped the same way |

Templates keep OpenAI's names, since hone's graders read the same sample and item: the sample is
`{output_text, output_json}` and the item is the training record (its fields beside `messages`).
`{{ item.answers[0] }}` becomes `{{item.answers.0}}`. A judge's `model` must be one hone can load
(a shipped name or a model directory on the server); a field hone cannot honour is refused with a
400 that names it, never dropped in silence.

Python graders are off unless the operator starts the service (and its workers) with
`--allow-python-graders`; then each runs in hone's sandbox (`hone.rewards.sandbox`, docs/sandbox.md).
A job's python grader is always its own `source`: `check_python_graders` refuses one that a job's
`hone` overrides point at a file of the server, or that would run unsandboxed.
"""

from __future__ import annotations

import ast
import re
import tempfile
import time
from pathlib import Path

from pydantic import ValidationError

from hone.errors import RequestError
from hone.jobs.request import check_model
from hone.rewards import JUDGED, SPEC, grade_outputs, python_graders
from hone.rewards.spec import spec_message, spec_path

FIELDS = {  # the fields of each OpenAI grader that hone maps; any other field is refused by name
    "string_check": {"input", "reference", "operation"},
    "text_similarity": {"input", "reference", "evaluation_metric", "pass_threshold"},
    "python": {"source"},
    "score_model": {"model", "input", "range", "sampling_params"},
    "label_model": {"model", "input", "labels", "passing_labels"},
    "multi": {"graders", "calculate_output"},
}
WHY_NOT = {
    "image_tag": "hone runs python graders in its own sandbox on the worker, in no container image",
    "pass_threshold": "hone's judge scores are used as they are; there is no threshold",
    "sampling_params": "hone's judge decodes greedily; only max_completions_tokens is taken",
}
GRADER_KEYS = ("objective.grader", "eval.grader")  # where a run config holds grader specs
ENABLE = "its operator enables them with `hone service --allow-python-graders` (they run in hone's sandbox)"
OPENAI_RANGE = [0, 1]  # score_model's default range in OpenAI's API
_FIELD = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def hone_grader(spec, *, param: str, run_dir: Path, allow_python: bool = False) -> tuple[dict, dict[Path, str]]:
    """OpenAI grader `spec` -> (the validated hone spec, python sources to write: path -> code).

    Errors are 400s whose `param` is the offending field, e.g. `method.reinforcement.grader.operation`;
    a python grader is one unless `allow_python` (the service's `--allow-python-graders`)."""
    sources: dict[Path, str] = {}
    hone = _map(spec, param, run_dir / "graders", sources, allow_python)
    try:
        SPEC.validate_python(hone)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = spec_path(error["loc"])
        raise RequestError(f"{param}{'.' + where if where else ''}: {spec_message(error)}",
                           param=f"{param}.{where}" if where else param) from None
    return hone, sources


def _map(spec, param: str, source_dir: Path, sources: dict, allow_python: bool) -> dict:
    if not isinstance(spec, dict):
        raise RequestError(f"{param} must be a grader object with a type, one of {', '.join(FIELDS)}", param=param)
    kind = spec.get("type")
    if kind not in FIELDS:
        raise RequestError(f"{param}.type {kind!r} is not a grader hone maps; use one of {', '.join(FIELDS)}",
                           param=f"{param}.type")
    for name in spec:
        if name not in FIELDS[kind] | {"type", "name"}:
            why = WHY_NOT.get(name, f"{kind} takes {', '.join(sorted(FIELDS[kind] | {'name'}))}")
            raise RequestError(f"{param}.{name} is not supported: {why}", param=f"{param}.{name}")
    hone = {k: _template(v) if isinstance(v, str) and k != "name" else v for k, v in spec.items()}
    if kind == "python":
        if not allow_python:
            raise RequestError(f"{param}: python graders are off on this service; {ENABLE}", param=f"{param}.type",
                               code="python_graders_disabled")
        path = source_dir / f"{_file_name(spec.get('name'), len(sources))}.py"
        sources[path] = _checked_source(spec.get("source"), f"{param}.source")
        hone.pop("source", None)
        hone["function"] = f"{path}:grade"
        hone["sandbox"] = True
    elif kind in ("score_model", "label_model"):
        if "model" in spec:
            hone["model"] = check_model(spec["model"], param=f"{param}.model")
        if isinstance(spec.get("input"), list):
            hone["input"] = [_message(m, f"{param}.input[{i}]") for i, m in enumerate(spec["input"])]
        if kind == "score_model":
            hone.setdefault("range", OPENAI_RANGE)
            hone.pop("sampling_params", None)
            hone.update(_sampling(spec.get("sampling_params"), f"{param}.sampling_params"))
    elif kind == "multi" and isinstance(spec.get("graders"), dict):
        hone["graders"] = {name: _map(sub, f"{param}.graders.{name}", source_dir, sources, allow_python)
                           for name, sub in spec["graders"].items()}
    return hone


def check_python_graders(config: dict, run_dir: Path, *, allowed: bool) -> None:
    """A 400 unless every python grader of a job's run `config` (as data) may run on this service: allowed,
    sandboxed, and made from the job's own source (`<run dir>/graders/`), never a file a `hone` key names."""
    for key in GRADER_KEYS:
        section, name = key.split(".")
        for spec in python_graders((config.get(section) or {}).get(name)):
            if not allowed:
                raise RequestError(f"{key}: python graders are off on this service; {ENABLE}", param="hone",
                                   code="python_graders_disabled")
            target = Path(spec.get("function", "").rpartition(":")[0])
            if not spec.get("sandbox") or target.parent != Path(run_dir) / "graders":
                raise RequestError(f"{key}: a job's python grader is the `source` of method.reinforcement.grader, "
                                   "run in hone's sandbox; `hone` keys cannot name code on the server", param="hone")


def _template(text: str) -> str:
    """OpenAI's `{{ item.answers[0] }}` as hone's `{{item.answers.0}}`."""
    return _FIELD.sub(lambda m: "{{" + re.sub(r"\[(\d+)\]", r".\1", m.group(1).replace(" ", "")) + "}}", text)


def _message(message, param: str) -> dict:
    """An OpenAI input message (`content` a string or an `input_text` part) as hone's {role, content}."""
    if not isinstance(message, dict):
        raise RequestError(f"{param} must be a message object with role and content", param=param)
    unknown = sorted(set(message) - {"role", "content", "type"})
    if unknown:
        raise RequestError(f"{param}.{unknown[0]} is not supported: a message has role and content",
                           param=f"{param}.{unknown[0]}")
    content = message.get("content")
    if isinstance(content, dict) and content.get("type") in ("input_text", "output_text") and "text" in content:
        content = content["text"]
    if not isinstance(content, str):
        raise RequestError(f"{param}.content must be text (a string or an input_text part): a grader's prompt "
                           "is text. A vision-language judge is shown the item's own images (its image_url parts) "
                           "with that text; an image or audio part in the grader's prompt is not read",
                           param=f"{param}.content")
    role = "system" if message.get("role") == "developer" else message.get("role")
    return {"role": role, "content": _template(content)}


def _sampling(params, param: str) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(f"{param} must be an object", param=param)
    for name in params:
        if name != "max_completions_tokens":
            raise RequestError(f"{param}.{name} is not supported: {WHY_NOT['sampling_params']}",
                               param=f"{param}.{name}")
    return {"max_new_tokens": params["max_completions_tokens"]} if "max_completions_tokens" in params else {}


def _checked_source(source, param: str) -> str:
    """The python grader's code, if it parses and defines `grade` at its top level."""
    if not isinstance(source, str) or not source.strip():
        raise RequestError(f"{param} is required: python code that defines grade(sample, item) -> float",
                           param=param)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RequestError(f"{param} is not valid python: {exc.msg} (line {exc.lineno})", param=param) from None
    if not any(isinstance(node, ast.FunctionDef) and node.name == "grade" for node in tree.body):
        raise RequestError(f"{param} must define grade(sample, item) at its top level", param=param)
    return source


def _file_name(name, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", name) if isinstance(name, str) and name else "python"
    return f"{stem[:40]}_{index}"


def write_sources(sources: dict[Path, str]) -> None:
    for path, code in sources.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")


def validate_grader(spec, *, allow_python: bool = False) -> dict:
    """`POST /v1/fine_tuning/alpha/graders/validate`: the grader as given, once hone can map and run it
    (a 400 naming the offending field otherwise; python graders as the service's `--allow-python-graders` says)."""
    with tempfile.TemporaryDirectory(prefix="hone-grader-") as folder:
        hone_grader(spec, param="grader", run_dir=Path(folder), allow_python=allow_python)
    return {"grader": spec}


def run_grader(spec, model_sample, item, *, allow_python: bool = False) -> dict:
    """`POST /v1/fine_tuning/alpha/graders/run`: grade one model sample against one item, as a reinforcement
    job's reward would be, in OpenAI's response shape. A python grader's source lives in a throwaway
    folder for the call and runs as it would in a job: sandboxed, and only where the service allows python graders."""
    if not isinstance(model_sample, str):
        raise RequestError("model_sample is required: the model's output as a string", param="model_sample")
    if item is not None and not isinstance(item, dict):
        raise RequestError("item must be an object: the record the sample answers", param="item")
    with tempfile.TemporaryDirectory(prefix="hone-grader-") as folder:
        hone, sources = hone_grader(spec, param="grader", run_dir=Path(folder), allow_python=allow_python)
        write_sources(sources)
        started = time.perf_counter()
        grade = grade_outputs(SPEC.validate_python(hone), [model_sample], [item or {}])[0]
        seconds = time.perf_counter() - started
    kind = spec["type"]
    name = spec.get("name") or kind
    sub = {key: value["score"] for key, value in grade.details.items()
           if kind == "multi" and isinstance(value, dict) and "score" in value}
    return {"reward": grade.score, "sub_rewards": sub, "model_grader_token_usage_per_model": {},
            "metadata": {"name": name, "type": kind, "execution_time": seconds, "scores": {name: grade.score, **sub},
                         "token_usage": None, "sampled_model_name": None, "errors": _errors(kind, grade)},
            "hone": {"reason": grade.reason}}


def _errors(kind: str, grade) -> dict:
    """OpenAI's error flags for a grade: hone's graders say only whether, and why, a grade failed."""
    flags = dict.fromkeys(("formula_parse_error", "invalid_variable_error", "model_grader_parse_error",
                           "model_grader_refusal_error", "model_grader_server_error", "other_error",
                           "python_grader_runtime_error", "python_grader_server_error", "sample_parse_error",
                           "truncated_observation_error", "unresponsive_reward_error"), False)
    details = dict.fromkeys(("model_grader_server_error_details", "python_grader_runtime_error_details",
                             "python_grader_server_error_type"))
    if grade.error:
        if kind == "python":
            flags["python_grader_runtime_error"] = True
            details["python_grader_runtime_error_details"] = grade.reason
        elif kind in JUDGED:
            flags["model_grader_parse_error"] = True
        elif "template" in grade.reason or "no field" in grade.reason:
            flags["invalid_variable_error"] = True
        else:
            flags["other_error"] = True
    return {**flags, **details}
