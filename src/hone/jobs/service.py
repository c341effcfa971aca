"""Fine-tuning jobs as a service: the status machine and the mapping from OpenAI's job request to hone.

Status machine (every change goes through `transition`):

    validating_files -> queued -> running -> succeeded | failed | cancelled
                        queued | running -> paused -> queued (resume)
                        running -> queued (its worker was asked to stop; the next one resumes it)
    any state that has not ended -> cancelled

A job request (`model`, `training_file`, `method: {type, <type>: {hyperparameters}}`, ...) becomes
the `RunConfig` the worker trains, through the one table `METHODS` below. `"auto"` hyper-parameters
are resolved from the training file's size when the job is created and recorded on the job. A
reinforcement job's OpenAI grader becomes a hone grader spec (`hone.jobs.graders`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from hone.config.load import load_config
from hone.config.schema import TrackingConfig
from hone.data.pairs import PAIR_FORMATS
from hone.data.prepare import SFT_FORMATS
from hone.data.prompts import PROMPT_FORMATS
from hone.errors import ConflictError, HoneError, NotFoundError, QuotaError, RequestError
from hone.jobs.graders import check_python_graders, hone_grader, write_sources
from hone.jobs.images import resolved_data_file
from hone.jobs.request import (MIN_TRAINING_EXAMPLES, check_example_lengths, check_file, check_formats,
                               check_hone_overrides, check_metadata, check_model, check_suffix, check_teacher)
from hone.jobs.store import Store, new_id

STATUSES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
TRANSITIONS = {
    "validating_files": {"queued", "failed", "cancelled"},
    "queued": {"running", "paused", "cancelled"},
    "running": {"succeeded", "failed", "cancelled", "paused", "queued"},  # queued: its worker stopped
    "paused": {"queued", "cancelled"},
    "succeeded": set(), "failed": set(), "cancelled": set(),
}
ENDED = ("succeeded", "failed", "cancelled")

CHECKPOINT_MODELS = 3  # a job's newest checkpoints kept as callable models, as OpenAI keeps the last 3 epochs'
BASE_LR = 2e-4  # learning_rate_multiplier 1.0 means this LoRA learning rate
GROUP_SIZE = 8  # compute_multiplier 1.0 means this many completions sampled per prompt
REASONING_TOKENS = {"low": 64, "medium": 128, "high": 256}  # reasoning_effort -> objective.max_new_tokens
_COMMON = {"n_epochs": "train.epochs", "batch_size": "train.batch_size", "learning_rate_multiplier": "train.lr"}
# OpenAI method type -> hone objective, the record formats its files may hold, the options it takes beside
# its hyper-parameters, and each hyper-parameter's hone config key (None: recorded only, no setting in hone).
METHODS = {
    "supervised": {"objective": "sft", "formats": SFT_FORMATS, "options": (), "hyperparameters": _COMMON},
    "dpo": {"objective": "dpo", "formats": PAIR_FORMATS, "options": (),
            "hyperparameters": {**_COMMON, "beta": "objective.beta"}},
    "reinforcement": {"objective": "grpo", "formats": PROMPT_FORMATS, "options": ("grader",), "hyperparameters": {
        **_COMMON, "eval_interval": "train.eval_every", "eval_samples": None,
        "compute_multiplier": "objective.group_size", "reasoning_effort": "objective.max_new_tokens"}},
    # hone's addition: sequence-level distillation from a teacher endpoint's answers to the file's prompts
    "distill": {"objective": "distill", "formats": PROMPT_FORMATS, "options": ("teacher_base_url", "teacher_model"),
                "hyperparameters": {**_COMMON, "temperature": "objective.temperature",
                                    "max_new_tokens": "objective.max_new_tokens"}},
}


@dataclass
class ServiceSettings:
    """Where the service keeps files and runs, and its limits."""

    data_dir: Path
    max_upload_bytes: int = 100 * 2**20
    max_active_jobs: int = 4
    """Jobs per project that have not ended (validating, queued, running, paused)."""
    max_running_jobs: int | None = 2
    """Jobs per project that run at once; a worker leaves the project's next job queued (None: no limit)."""
    lease_seconds: float = 30.0
    """A running job whose worker has not renewed its lease for this long is taken by another worker."""
    job_overrides: dict = field(default_factory=dict)
    """hone config keys set on every job (e.g. {"train.threads": 1}); a request's `hone` keys win."""
    allow_python_graders: bool = False
    """Accept reinforcement jobs whose grader runs python code (in hone's sandbox, docs/sandbox.md)."""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.max_running_jobs is not None and self.max_running_jobs < 1:
            raise HoneError(f"must be at least 1, got {self.max_running_jobs}", where="--max-running-jobs")


def not_found(kind: str, ident: str, param: str | None = None) -> NotFoundError:
    return NotFoundError(f"No {kind} with id {ident!r} in this project", param=param, code="not_found")


def transition(store: Store, job: dict, to: str, *, expect: dict | None = None, **values) -> dict:
    """Move `job` to status `to` if the machine allows it and nobody changed it meanwhile; the new row."""
    if to not in TRANSITIONS[job["status"]]:
        raise ConflictError(f"job {job['id']} is {job['status']}; it cannot become {to}",
                            code="invalid_job_state")
    if to in ENDED:
        values.setdefault("finished_at", int(time.time()))
    if not store.update_job(job["id"], expect={"status": job["status"], **(expect or {})}, status=to, **values):
        current = store.get_job(None, job["id"])
        raise ConflictError(f"job {job['id']} changed to {current['status']} meanwhile; try again",
                            code="invalid_job_state")
    store.add_event(job["id"], _STATUS_MESSAGES.get(to, f"Job is {to}"))
    return store.get_job(None, job["id"])


_STATUS_MESSAGES = {"queued": "Job queued", "running": "Fine-tuning job started", "paused": "Job paused",
                    "succeeded": "The job has successfully completed", "cancelled": "Job cancelled"}


def create_job(store: Store, settings: ServiceSettings, project_id: str, request: dict) -> dict:
    """Validate an OpenAI job request, resolve it into a hone RunConfig and queue it; the job row."""
    if store.count_active_jobs(project_id) >= settings.max_active_jobs:
        raise QuotaError(f"this project already has {settings.max_active_jobs} jobs that have not ended "
                         "(the limit); wait for one to finish or cancel one", code="rate_limit_exceeded")
    model = check_model(request.get("model"))
    training = check_file(store, project_id, request.get("training_file"), "training_file")
    validation = (check_file(store, project_id, request["validation_file"], "validation_file")
                  if request.get("validation_file") else None)
    suffix = check_suffix(request.get("suffix"))
    seed = request.get("seed")
    if seed is None:
        seed = random.randrange(2**31)
    elif not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise RequestError("seed must be an integer in [0, 2147483647]", param="seed")
    metadata = check_metadata(request.get("metadata"))
    job_id = new_id("ftjob")
    run_dir = settings.data_dir / "runs" / job_id
    method, overrides, sources = resolve_method(request, examples=(training["report"] or {}).get("valid", 0),
                                                run_dir=run_dir, allow_python=settings.allow_python_graders)
    formats = METHODS[method["type"]]["formats"]
    check_formats(training, formats, method["type"], "training_file", minimum=MIN_TRAINING_EXAMPLES)
    if validation:
        check_formats(validation, formats, method["type"], "validation_file")
    paths = {}
    for row, param in ((training, "training_file"), (validation, "validation_file")):
        if row:
            paths[param] = resolved_data_file(store, project_id, row, run_dir / "data" / f"{param}.jsonl", param)
            check_example_lengths({**row, "path": paths[param]}, model, param)
    config_keys = {"train.checkpoint_models": CHECKPOINT_MODELS, **settings.job_overrides, **overrides,
                   **tracking_keys(request.get("integrations")), **check_hone_overrides(request.get("hone")),
                   "model": model, "name": job_id, "output_dir": str(run_dir.parent),
                   "data.train": paths["training_file"], "train.seed": seed}
    if validation:
        config_keys["data.validation"] = paths["validation_file"]
    if config_keys.get("eval.file") is not None:  # an uploaded file scored after training (hone's addition)
        scored = check_file(store, project_id, config_keys["eval.file"], "hone.eval.file")
        config_keys["eval.file"] = resolved_data_file(store, project_id, scored, run_dir / "data" / "eval_file.jsonl",
                                                      "hone.eval.file")
    try:
        config = load_config(None, config_keys)
    except HoneError as error:
        raise RequestError(str(error), param="hone") from None
    check_python_graders(config.model_dump(mode="json"), run_dir, allowed=settings.allow_python_graders)
    write_sources(sources)
    row = {"id": job_id, "model": model, "training_file": training["id"],
           "validation_file": validation["id"] if validation else None, "suffix": suffix, "seed": seed,
           "method": method, "config": config.model_dump(mode="json"), "status": "validating_files",
           "metadata": metadata, "created_at": int(time.time()), "run_dir": str(run_dir)}
    job = store.add_job(project_id, row)
    store.add_event(job_id, f"Validating training file: {training['id']}"
                    + (f" and validation file: {validation['id']}" if validation else ""))
    return transition(store, job, "queued")


def tracking_keys(integrations) -> dict:
    """OpenAI's `integrations` as hone config keys: a `wandb` integration becomes train.tracking (TensorBoard
    event files in the job's run, offline: hone sends nothing to another service), with its project, name,
    entity and tags. Any other type, or a second integration, is refused by name."""
    if not integrations:
        return {}
    if not isinstance(integrations, list) or len(integrations) > 1:
        raise RequestError("integrations takes at most one integration, of type wandb", param="integrations")
    given = integrations[0]
    if not isinstance(given, dict) or given.get("type") != "wandb":
        kind = given.get("type") if isinstance(given, dict) else given
        raise RequestError(f"integrations[0].type {kind!r} is not supported; hone maps type wandb to its own "
                           "offline tracking (TensorBoard event files in the job's run)", param="integrations[0].type")
    extra = sorted(set(given) - {"type", "wandb"})
    options = given.get("wandb")
    if extra or not isinstance(options, dict):
        raise RequestError("integrations[0] is {\"type\": \"wandb\", \"wandb\": {\"project\": ...}}",
                           param=f"integrations[0].{extra[0] if extra else 'wandb'}")
    unknown = sorted(set(options) - {"project", "name", "entity", "tags"})
    if unknown:
        raise RequestError(f"integrations[0].wandb.{unknown[0]} is not supported; hone takes project, name, entity "
                           "and tags", param=f"integrations[0].wandb.{unknown[0]}")
    if "project" not in options:
        raise RequestError("integrations[0].wandb.project is required", param="integrations[0].wandb.project")
    given = {k: v for k, v in options.items() if v is not None}
    try:
        TrackingConfig(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = f"integrations[0].wandb.{'.'.join(map(str, error['loc']))}"
        raise RequestError(f"{where}: {error['msg']}", param=where) from None
    return {f"train.tracking.{k}": v for k, v in given.items()}


def job_integrations(config: dict) -> list[dict]:
    """The job's integrations in OpenAI's shape, from the train.tracking it runs with."""
    tracking = (config.get("train") or {}).get("tracking")
    if not tracking:
        return []
    return [{"type": "wandb", "wandb": {k: tracking.get(k) for k in ("project", "name", "entity", "tags")}}]


def resolve_method(request: dict, *, examples: int, run_dir: Path,
                   allow_python: bool = False) -> tuple[dict, dict, dict]:
    """OpenAI's `method` (or legacy top-level `hyperparameters`) -> (method with "auto" resolved,
    hone config overrides, python grader sources to write into `run_dir`: path -> code)."""
    method = request.get("method") or {"type": "supervised",
                                       "supervised": {"hyperparameters": request.get("hyperparameters") or {}}}
    if not isinstance(method, dict) or method.get("type") not in METHODS:
        raise RequestError(f"method.type must be one of {', '.join(METHODS)}", param="method.type")
    kind = method["type"]
    entry = METHODS[kind]
    options = method.get(kind) or {}
    given = options.get("hyperparameters") or {} if isinstance(options, dict) else None
    if not isinstance(given, dict):
        raise RequestError(f"method.{kind} must be an object like {{\"hyperparameters\": {{\"n_epochs\": 3}}}}",
                           param=f"method.{kind}")
    extra = sorted(set(options) - {"hyperparameters", *entry["options"]})
    if extra:
        raise RequestError(f"method.{kind}.{extra[0]} is not supported; method.{kind} takes "
                           f"{', '.join(['hyperparameters', *entry['options']])}", param=f"method.{kind}.{extra[0]}")
    unknown = sorted(set(given) - set(entry["hyperparameters"]))
    if unknown:
        raise RequestError(f"unknown hyper-parameter {unknown[0]!r} for {kind}; expected one of "
                           f"{', '.join(entry['hyperparameters'])}",
                           param=f"method.{kind}.hyperparameters.{unknown[0]}")
    resolved = {name: _resolve(name, given.get(name, "auto"), examples, kind) for name in entry["hyperparameters"]
                if name in given or name in AUTO}
    overrides = {"objective.type": entry["objective"]}
    for name, value in resolved.items():
        if entry["hyperparameters"][name] is not None:
            overrides[entry["hyperparameters"][name]] = CONVERT.get(name, lambda v: v)(value)
    recorded, sources = {"hyperparameters": resolved}, {}
    if "grader" in entry["options"]:
        if "grader" not in options:
            raise RequestError(f"method.{kind}.grader is required: the grader that scores each sampled answer, "
                               "e.g. {\"type\": \"string_check\", \"input\": \"{{sample.output_text}}\", "
                               "\"reference\": \"{{item.reference}}\", \"operation\": \"eq\"}",
                               param=f"method.{kind}.grader")
        overrides["objective.grader"], sources = hone_grader(options["grader"], param=f"method.{kind}.grader",
                                                             run_dir=run_dir, allow_python=allow_python)
        recorded = {"grader": options["grader"], **recorded}
    if "teacher_model" in entry["options"]:
        teacher = check_teacher(options, param=f"method.{kind}")
        overrides.update({"objective.mode": "sequence", "objective.teacher": teacher["teacher_base_url"],
                          "objective.teacher_model": teacher["teacher_model"]})
        recorded = {**teacher, **recorded}
    return {"type": kind, kind: recorded}, overrides, sources


def auto_epochs(examples: int) -> int:
    """More passes over small files: 3 below 1,000 examples, 2 below 5,000, else 1."""
    return 3 if examples < 1000 else 2 if examples < 5000 else 1


def auto_batch_size(examples: int) -> int:
    """8, or about a tenth of the file when it is smaller than 80 examples (at least 1)."""
    return max(1, min(8, examples // 10))


AUTO = {"n_epochs": auto_epochs, "batch_size": auto_batch_size, "learning_rate_multiplier": lambda _: 1.0,
        "compute_multiplier": lambda _: 1.0, "reasoning_effort": lambda _: "medium", "eval_samples": lambda _: 1,
        "temperature": lambda _: 0.0, "max_new_tokens": lambda _: 512}
CONVERT = {"learning_rate_multiplier": lambda m: m * BASE_LR,
           "compute_multiplier": lambda m: max(2, round(GROUP_SIZE * m)),
           "reasoning_effort": REASONING_TOKENS.__getitem__}
_LIMITS = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": (float, 1e-3, 100.0),
           "beta": (float, 1e-4, 100.0), "eval_interval": (int, 1, 10**6), "compute_multiplier": (float, 0.25, 8.0),
           "eval_samples": (int, 1, 1), "temperature": (float, 0.0, 2.0), "max_new_tokens": (int, 1, 4096)}
_WHY = {"eval_samples": " (hone validates with one greedy answer per validation prompt)"}


def _resolve(name: str, value, examples: int, kind: str):
    param = f"method.{kind}.hyperparameters.{name}"
    if name == "reasoning_effort":
        if value in ("auto", "default"):
            value = AUTO[name](examples)
        if value not in REASONING_TOKENS:
            raise RequestError(f"{name} must be \"default\" or one of {', '.join(REASONING_TOKENS)} (answers of "
                               f"{', '.join(map(str, REASONING_TOKENS.values()))} tokens at most), got {value!r}",
                               param=param)
        return value
    if value == "auto":
        if name not in AUTO:
            raise RequestError(f"{name} has no automatic value; give a number", param=param)
        return AUTO[name](examples)
    kind_of, low, high = _LIMITS[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind_of is float or value == int(value))
    if not ok or not low <= value <= high:
        raise RequestError(f"{name} must be \"auto\" or a{'n integer' if kind_of is int else ' number'} "
                           f"in [{low}, {high}], got {value!r}{_WHY.get(name, '')}", param=param)
    return kind_of(value)


def cancel_job(store: Store, job: dict) -> dict:
    return transition(store, job, "cancelled")


def pause_job(store: Store, job: dict) -> dict:
    return transition(store, job, "paused")


def resume_job(store: Store, job: dict) -> dict:
    if job["status"] != "paused":
        raise ConflictError(f"job {job['id']} is {job['status']}; only a paused job resumes",
                            code="invalid_job_state")
    return transition(store, job, "queued")


def fine_tuned_model_name(job: dict) -> str:
    """OpenAI's `ft:<base>:<project>:<suffix>:<id>` naming; the base is a directory's last part."""
    base = Path(job["model"]).name.replace(":", "-")
    return f"ft:{base}:{job['project_id']}:{job['suffix'] or ''}:{job['id'].removeprefix('ftjob-')[:8]}"



def report_page(job: dict) -> Path | None:
    """The run's `hone report` page (RUN/report/index.html), if it was written."""
    page = Path(job["run_dir"]) / "report" / "index.html" if job.get("run_dir") else None
    return page if page is not None and page.is_file() else None
