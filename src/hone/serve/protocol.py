"""OpenAI's request and response shapes (the subset hone serves), as pydantic models.

Requests ignore fields that do not change the answer (`user`, penalties the client sends by default);
fields hone implements are validated, and one that would change the answer but that hone cannot honour
(a forced tool choice, log-probabilities, JSON modes, echo, best_of) is refused with a 400 naming it.
Chat requests take OpenAI's function calling: `tools`, `tool_choice` (`auto` or `none`),
`parallel_tool_calls`, assistant `tool_calls` and `tool` messages in the conversation.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hone.data.record_errors import RecordError
from hone.data.tools import check_tool_turns, parse_tool_calls_field, parse_tools
from hone.jobs.service import job_integrations


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    ignore_eos: bool = False
    """An extension (as in vLLM): generate max_tokens tokens even past end-of-sequence."""

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if isinstance(value, list) and (len(value) > 4 or not all(isinstance(s, str) and s for s in value)):
            raise ValueError("stop must be a string or a list of at most 4 non-empty strings")
        return value

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict] | None = None
    """A string, or OpenAI's content parts: `{"type": "text", "text"}` and `{"type": "image_url", "image_url":
    {"url", "detail"?}}` (images for a vision-language model; `hone.serve.images` reads them)."""
    tool_calls: list[dict] | None = None
    """An assistant's calls, OpenAI's `[{"id", "type": "function", "function": {"name", "arguments"}}]`."""
    tool_call_id: str | None = None
    """The call a `tool` message answers."""

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p["text"] for p in self.content if p.get("type") == "text" and isinstance(p.get("text"), str))

    @model_validator(mode="after")
    def _tool_turns(self):
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"tool_calls is set on a {self.role} message; only assistant messages call tools")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id, the id of the call it answers")
        if self.content is None and not self.tool_calls:
            raise ValueError("content is required (only an assistant message with tool_calls may omit it)")
        return self


def _refuse(name: str, why: str, off: tuple = (None,)):
    """A validator that refuses any value of `name` but those in `off` (each a value that asks for nothing)."""
    def check(cls, value):
        if any(type(value) is type(allowed) and value == allowed for allowed in off):
            return value
        raise ValueError(f"{name} is not supported: {why}")

    return field_validator(name)(classmethod(check))


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)
    tools: list[dict] | None = None
    """Functions the model may call (OpenAI's `[{"type": "function", "function": {...}}]`); its calls come
    back parsed as `tool_calls`."""
    tool_choice: str | dict | None = None
    """`auto` (the default with tools) or `none` (the tools are not shown and no call is parsed)."""
    parallel_tool_calls: bool | None = None
    """false: at most one call per reply (the first the model makes)."""
    # refused with a 400 that names them, never ignored: hone cannot honour them
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict | None = None

    _tool_choice = _refuse("tool_choice", "hone does not constrain decoding to force a call; use \"auto\" (the model "
                           "decides) or \"none\"", (None, "auto", "none"))
    _logprobs = _refuse("logprobs", "hone's server returns no log-probabilities", (None, False))
    _top_logprobs = _refuse("top_logprobs", "hone's server returns no log-probabilities")
    _format = _refuse("response_format", "hone does not constrain decoding to JSON; only {\"type\": \"text\"}",
                      (None, {"type": "text"}))

    @field_validator("tools")
    @classmethod
    def _tools_shape(cls, value):
        return parse_tools(value) if value else None

    @model_validator(mode="after")
    def _calls_in_the_conversation(self):
        try:
            check_tool_turns(self.plain_messages(), self.tools, True)  # calls are checked against tools when given
        except RecordError as error:
            raise ValueError(str(error)) from None
        return self

    def plain_messages(self) -> list[dict]:
        """hone's message dicts for the chat template ('developer' is OpenAI's newer name for 'system'),
        with an assistant's `tool_calls` and a tool message's `tool_call_id`."""
        messages = []
        for i, m in enumerate(self.messages):
            message = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            if m.tool_calls:
                try:
                    message["tool_calls"] = parse_tool_calls_field(m.tool_calls, f"messages[{i}].tool_calls")
                except RecordError as error:
                    raise ValueError(str(error)) from None
            if m.role == "tool":
                message["tool_call_id"] = m.tool_call_id
            messages.append(message)
        return messages

    def offered_tools(self) -> list[dict] | None:
        """The tools the model is shown and whose calls are parsed: none when tool_choice is 'none'."""
        return None if self.tool_choice == "none" else self.tools

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Request):
    prompt: str | list[str]
    echo: bool | None = None
    best_of: int | None = None
    logprobs: int | None = None
    suffix: str | None = None

    _echo = _refuse("echo", "hone's server returns only the completion", (None, False))
    _best_of = _refuse("best_of", "hone's server samples n completions and returns them all; ask for n", (None, 1))
    _logprobs = _refuse("logprobs", "hone's server returns no log-probabilities")
    _suffix = _refuse("suffix", "hone's server does not insert text between a prompt and a suffix")

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "hone"
    parent: str | None = None
    root: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Feedback(BaseModel):
    """A user's verdict on one response: a rating (1-5) and/or the answer it should have given."""

    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1)
    choice: int = Field(0, ge=0)
    """Which choice of the response (when it had n > 1)."""
    rating: int | None = Field(None, ge=1, le=5)
    corrected: str | None = Field(None, min_length=1)
    comment: str | None = None

    @model_validator(mode="after")
    def _something(self):
        if self.rating is None and self.corrected is None:
            raise ValueError("give a rating (1-5), a corrected answer, or both")
        return self


class RegisterAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)
    replace: bool = False


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens).model_dump()


def chat_response(rid: str, model: str, created: int, choices: list[dict], usage_: dict) -> dict:
    """A chat completion; a choice with `tool_calls` has them in its message (content null when no text)."""
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": c["index"], "message": chat_message(c),
                         "finish_reason": c["finish_reason"], "logprobs": None} for c in choices],
            "usage": usage_}


def chat_message(choice: dict) -> dict:
    calls = choice.get("tool_calls")
    if not calls:
        return {"role": "assistant", "content": choice["text"]}
    return {"role": "assistant", "content": choice["text"] or None, "tool_calls": calls}


def chat_chunk(rid: str, model: str, created: int, index: int, *, role: bool = False, text: str | None = None,
               finish_reason: str | None = None, tool_calls: list[dict] | None = None) -> dict:
    """One streamed piece; `tool_calls` are whole calls, each with its `index` in the reply."""
    delta: dict = {"role": "assistant"} if role else {}
    if text is not None:
        delta["content"] = text
    if tool_calls:
        delta["tool_calls"] = [{"index": k, **call} for k, call in enumerate(tool_calls)]
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def completion_response(rid: str, model: str, created: int, choices: list[dict], usage_: dict) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": c["index"], "text": c["text"], "finish_reason": c["finish_reason"],
                         "logprobs": None} for c in choices],
            "usage": usage_}


def completion_chunk(rid: str, model: str, created: int, index: int, *, text: str = "",
                     finish_reason: str | None = None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}]}


def usage_chunk(rid: str, model: str, created: int, obj: str, usage_: dict) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage_}


# -- errors ---------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # hone adds fields, e.g. an uploaded file's `report`
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error: OpenAI's `{"error": {message, type, param, code}}`."""

    error: ErrorDetail


# -- files and fine-tuning jobs -------------------------------------------------------------------
class FileReportSummary(BaseModel):
    """hone's addition to a file: the counts of its `hone data check` report (full: GET .../report)."""

    lines: int | None = None
    valid: int | None = None
    formats: dict[str, int] | None = None
    duplicates: list[list[int]] | None = None
    ok: bool | None = None


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None
    report: FileReportSummary

    @classmethod
    def from_row(cls, row: dict) -> "FileObject":
        report = row.get("report") or {}
        return cls(id=row["id"], bytes=row["bytes"], created_at=row["created_at"], filename=row["filename"],
                   purpose=row["purpose"], report=FileReportSummary(**{k: report.get(k) for k in
                                                                      FileReportSummary.model_fields}))


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class JobProgress(BaseModel):
    step: int
    total_steps: int | None = None


class JobObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, int | float | str]
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict] = []
    metadata: dict[str, str] | None = None
    method: dict
    user_provided_suffix: str | None = None
    progress: JobProgress | None = None
    """hone's addition: the step reached and the steps in all."""
    results: dict | None = None
    """hone's addition: the tuned model's final metrics (train/valid loss, eval_* scores)."""
    report: str | None = None
    """hone's addition: the URL of the run's `hone report` page, when there is one."""

    @classmethod
    def from_row(cls, row: dict, *, has_report: bool) -> "JobObject":
        method = row["method"]
        hyper = method.get(method["type"], {}).get("hyperparameters", {})
        return cls(
            id=row["id"], created_at=row["created_at"], error=row["error"], fine_tuned_model=row["fine_tuned_model"],
            finished_at=row["finished_at"], model=row["model"], organization_id=row["project_id"],
            hyperparameters={k: hyper[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier") if k in hyper},
            result_files=row["result_files"] or [], seed=row["seed"], status=row["status"],
            trained_tokens=row["trained_tokens"], training_file=row["training_file"],
            validation_file=row["validation_file"], metadata=row["metadata"], method=method,
            user_provided_suffix=row["suffix"], progress=row["progress"], results=row["results"],
            estimated_finish=(row["progress"] or {}).get("estimated_finish") if row["status"] == "running" else None,
            integrations=job_integrations(row["config"]),
            report=f"/v1/fine_tuning/jobs/{row['id']}/report" if has_report else None)


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict
    type: Literal["message", "metrics"]

    @classmethod
    def from_row(cls, row: dict) -> "JobEvent":
        return cls(id=f"ftevent-{row['seq']}", created_at=row["created_at"], level=row["level"],
                   message=row["message"], data=row["data"] or {}, type=row["type"])

    @staticmethod
    def seq(event_id: str | None) -> int | None:
        """The store's sequence number in an event id (`ftevent-42` -> 42); None for None, -1 when malformed."""
        if event_id is None:
            return None
        number = event_id.removeprefix("ftevent-")
        return int(number) if number.isdigit() else -1


class JobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict
    step_number: int

    @classmethod
    def from_row(cls, row: dict) -> "JobCheckpoint":
        return cls(id=row["id"], created_at=row["created_at"], fine_tuning_job_id=row["job_id"],
                   fine_tuned_model_checkpoint=row["fine_tuned_model_checkpoint"], metrics=row["metrics"] or {},
                   step_number=row["step"])


class _Page(BaseModel):
    object: Literal["list"] = "list"
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class FileList(_Page):
    data: list[FileObject]


class JobList(_Page):
    data: list[JobObject]


class JobEventList(_Page):
    data: list[JobEvent]


class JobCheckpointList(_Page):
    data: list[JobCheckpoint]


def page(kind: type[_Page], items: list, has_more: bool) -> _Page:
    """A list page in OpenAI's shape: the items, whether more follow, and the first and last ids."""
    return kind(data=items, has_more=has_more, first_id=items[0].id if items else None,
                last_id=items[-1].id if items else None)


class JobRequest(BaseModel):
    """`POST /v1/fine_tuning/jobs`. The service checks each value (`hone.jobs.service.create_job`); a
    field hone does not know is refused by name. `hone` is hone's addition: config keys for the run."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    metadata: dict[str, str] | None = None
    method: dict | None = None
    hyperparameters: dict | None = None
    """The legacy form of `method.supervised.hyperparameters`."""
    integrations: list[dict] | None = None
    """One of type wandb: the job's metrics go to hone's offline tracking (`hone.jobs.service.tracking_keys`)."""
    hone: dict | None = None


class WorkerCount(BaseModel):
    configured: int
    """Worker processes `hone service` keeps running beside its API (0: workers run elsewhere)."""
    alive: int
    respawned: int
    """Workers that died and were started again since the service started."""


class ServiceStatus(BaseModel):
    object: Literal["service.status"] = "service.status"
    workers: WorkerCount


# -- checkpoint permissions, graders, model deletion ----------------------------------------------
class PermissionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project_ids: list[str] = Field(min_length=1)
    """The hone projects (ids, `proj-...`) that may call the checkpoint's model."""


class CheckpointPermission(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    created_at: int
    project_id: str

    @classmethod
    def from_row(cls, row: dict) -> "CheckpointPermission":
        return cls(id=row["id"], created_at=row["created_at"], project_id=row["project_id"])


class CheckpointPermissionList(_Page):
    data: list[CheckpointPermission]


class CheckpointPermissionDeleted(BaseModel):
    id: str
    object: Literal["checkpoint.permission"] = "checkpoint.permission"
    deleted: bool


class GraderValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grader: dict
    """An OpenAI grader object (string_check, text_similarity, python, score_model, label_model, multi)."""


class GraderRunRequest(GraderValidateRequest):
    model_sample: str
    """The model's output, the grader's `sample` (`output_json` when it parses as JSON)."""
    item: dict | None = None
    """The record the sample answers, the grader's `item`."""


class GraderValidateResponse(BaseModel):
    grader: dict


class GraderRunResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    reward: float
    sub_rewards: dict
    model_grader_token_usage_per_model: dict
    metadata: dict
    """name, type, execution_time, scores, token_usage, sampled_model_name and OpenAI's `errors` flags."""
    hone: dict
    """hone's addition: the grader's `reason` for the score."""


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool
