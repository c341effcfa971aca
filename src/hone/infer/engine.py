"""One base model, many LoRA adapters, batched generation with streaming.

A single worker thread owns the model. Requests (`Job`s) go into a queue; the worker takes what
has arrived (waiting `batch_wait_s` for more after the first, up to `max_batch_rows` rows),
loads the adapters they need into the LRU (`infer/registry.py`), and decodes all rows in ONE
batch with hone's loop (`models/generate.decode`). Each row goes through its own adapter (or the
base) in the same forward pass: the adapters live in hone's batched LoRA layers
(`infer/multilora.py`), whose cost does not grow with the number of distinct adapters in a
batch, and the base is never reloaded. Tokens reach each job through its `emit` callback as they
are generated (streaming); stop strings, per-request limits and sampling settings apply per row.
A batch runs to completion before the next starts (no joining mid-decode).

A request with images (a vision-language base) runs alone: its prompt is prefilled with its pixel
inputs and decoded from the KV cache by the model's own `generate` (each family places its image
features and positions its own way), through its adapter's slot, one choice after another.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from hone.errors import HoneError, ModelError
from hone.infer.multilora import MultiLora
from hone.infer.registry import AdapterInfo, AdapterRegistry, check_name
from hone.methods import METHODS
from hone.methods.base import Method
from hone.methods.lora import LoraOptions
from hone.methods.vision import whole_parts
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.generate import decode, expand_cache, pick_next, prefill, shared_prefix_length, stop_token_ids
from hone.models.load import load_model


@dataclass
class Job:
    """One request: a prompt (token ids) for the base (`adapter=None`) or a named adapter, `n` choices."""

    prompt: list[int]
    adapter: str | None = None
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    emit: Callable[[dict], None] = lambda event: None
    """Called from the worker thread with {"type": "token", "index", "text"}, {"type": "finish",
    "index", "reason", "tokens"} or {"type": "error", "error"}."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence tokens until max_tokens (benchmarks: fixed lengths)."""
    cancelled: bool = False
    """Set by the caller (a client went away): its rows stop at the next step."""
    pixels: dict | None = None
    """A prompt with images: the processor's pixel inputs beside `prompt` (which holds the image tokens)."""


@dataclass
class Choice:
    """A finished choice (what `Engine.run` returns)."""

    text: str
    finish_reason: str
    tokens: int


class Engine:
    """Generation for a base model and the adapters registered on it."""

    def __init__(self, model, tokenizer, source, *, max_batch_rows: int = 16, batch_wait_s: float = 0.005,
                 max_loaded: int = 16, max_bytes: int = 1 << 30, on_cache_event=None, on_batch=None) -> None:
        self.base = model
        self.lora = MultiLora(model)
        self.tokenizer = tokenizer
        self.source = source
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_s
        self.on_batch = on_batch  # (rows, new_tokens, seconds) after each batch, for metrics
        self.registry = AdapterRegistry(self._load, self._unload, max_loaded=max_loaded,
                                        max_bytes=max_bytes, on_event=on_cache_event)
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[Job] = []
        self._model_lock = threading.RLock()
        self._worker: threading.Thread | None = None

    @classmethod
    def from_spec(cls, spec: str, **options) -> "Engine":
        model, tokenizer, source = load_model(spec)
        return cls(model, tokenizer, source, **options)

    # -- adapters ---------------------------------------------------------------------------
    def register(self, name: str, path: str | Path, *, replace: bool = False) -> AdapterInfo:
        """Check an adapter artifact against this base and make it callable as `name` (weights load lazily)."""
        info = read_adapter(name, path, self.source)
        with self._model_lock:
            return self.registry.register(info, replace=replace)

    def unregister(self, name: str) -> None:
        with self._model_lock:
            self.registry.unregister(name)

    def register_dir(self, directory: str | Path) -> list[AdapterInfo]:
        """Register every adapter under `directory` (each subfolder with hone.json, or a run with adapter/)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelError("adapters directory does not exist", where=str(directory))
        found = []
        for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
            if (sub / "hone.json").is_file() or (sub / "adapter" / "hone.json").is_file():
                found.append(self.register(sub.name, sub))
        return found

    def chat_template(self, adapter: str | None) -> str | None:
        """The template prompts for `adapter` are rendered with: the one recorded at training time."""
        if adapter is None:
            return self.tokenizer.chat_template
        return self.registry.get(adapter).chat_template or self.tokenizer.chat_template

    def _load(self, info: AdapterInfo) -> int:
        with self._model_lock:
            return self.lora.add(info.name, info.path)

    def _unload(self, name: str) -> None:
        with self._model_lock:
            self.lora.remove(name)

    # -- generation -------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._serve_forever, name="hone-engine", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    def submit(self, job: Job) -> None:
        if job.adapter is not None:
            self.registry.get(job.adapter)  # unknown names fail now, in the caller's thread
        self._queue.put(job)

    def run(self, jobs: list[Job]) -> list[list[Choice]]:
        """Generate for `jobs` directly in this thread as one batch (no worker); choices per job."""
        results: list[dict[int, Choice]] = [{} for _ in jobs]
        texts: list[dict[int, str]] = [{} for _ in jobs]
        for k, job in enumerate(jobs):
            job.emit = _collector(results[k], texts[k])
        with self._model_lock:
            self._generate(jobs)
        return [[r[i] for i in sorted(r)] for r in results]

    def _serve_forever(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                return
            with self._model_lock:
                self._generate(jobs)

    def _next_batch(self) -> list[Job] | None:
        first = self._pending.pop(0) if self._pending else self._queue.get()
        if first is None:
            return None
        if first.pixels is not None:
            return [first]
        jobs, rows = [first], first.n
        deadline = time.monotonic() + self.batch_wait_s
        while rows < self.max_batch_rows:
            if self._pending:
                job = self._pending.pop(0)
            else:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if job is None:
                self._queue.put(None)
                break
            adapters = {j.adapter for j in jobs + [job] if j.adapter}
            if job.pixels is not None or rows + job.n > self.max_batch_rows or len(adapters) > self.registry.max_loaded:
                self._pending.insert(0, job)
                break
            jobs.append(job)
            rows += job.n
        return jobs

    def _generate(self, jobs: list[Job]) -> None:
        """Decode every row of `jobs` together; errors go to the jobs they concern, never up."""
        ready = []
        for job in jobs:
            try:
                if job.adapter is not None:
                    self.registry.ensure_loaded({job.adapter, *{j.adapter for j in ready if j.adapter}})
                ready.append(job)
            except HoneError as error:
                job.emit({"type": "error", "error": error})
            except Exception as error:  # noqa: BLE001 - a broken adapter file must not stop the server
                job.emit({"type": "error", "error": ModelError(f"cannot load adapter: {error}",
                                                               where=f"adapter {job.adapter}")})
        if ready:
            try:
                self._decode(ready)
            except Exception as error:  # noqa: BLE001 - reported to each waiting request
                for job in ready:
                    job.emit({"type": "error", "error": error})

    def _decode(self, jobs: list[Job]) -> None:
        if jobs[0].pixels is not None:
            return self._decode_with_images(jobs[0])
        rows = [(job, i) for job in jobs for i in range(job.n)]
        prompts = [job.prompt for job, _ in rows]
        model = self.base
        self.lora.use([job.adapter for job, _ in rows])
        stop = stop_token_ids(self.base, self.tokenizer)
        offset, cache = 0, None
        if len({job.adapter for job in jobs}) == 1:  # a shared prefix's KV is only shared under one adapter
            offset = shared_prefix_length(prompts)
            if offset:
                cache = expand_cache(prefill(model, prompts[0][:offset]), len(rows))
        tracker = _RowTracker(rows, self.tokenizer, stop)
        started = time.monotonic()
        # stop tokens are the tracker's business (per row: a job may ignore them), not decode's
        decode(model, [p[offset:] for p in prompts], offset, cache, pad_id=self.tokenizer.pad_token_id,
               stop=set(), max_new_tokens=max(job.max_tokens for job in jobs), pick=_sampler(jobs),
               on_step=tracker.step)
        tracker.finish_all()
        if self.on_batch is not None:
            self.on_batch(len(rows), tracker.total_tokens, time.monotonic() - started)

    def _decode_with_images(self, job: Job) -> None:
        """One request with images: each choice prefilled with the pixels and decoded by `generate`, the
        tracker reading every new token (stop strings, limits, streaming) and ending the row when it is done."""
        import torch

        self.lora.use([job.adapter])
        stop = stop_token_ids(self.base, self.tokenizer)
        rows = [(job, i) for i in range(job.n)]
        tracker = _RowTracker(rows, self.tokenizer, stop)
        device = next(self.base.parameters()).device
        ids = torch.tensor([job.prompt], device=device)
        inputs = {key: value.to(device) for key, value in job.pixels.items()}
        sampling = (dict(do_sample=True, temperature=job.temperature, top_p=job.top_p) if job.temperature > 0 else
                    dict(do_sample=False, temperature=None, top_p=None, top_k=None))
        if job.seed is not None:
            torch.manual_seed(job.seed)
        started = time.monotonic()
        for r in range(job.n):
            self.base.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs,
                               max_new_tokens=job.max_tokens, eos_token_id=None if job.ignore_eos else sorted(stop),
                               pad_token_id=self.tokenizer.pad_token_id,
                               stopping_criteria=[_TrackRow(tracker, r)], **sampling)
            tracker.finish_row(r)
        if self.on_batch is not None:
            self.on_batch(len(rows), tracker.total_tokens, time.monotonic() - started)


class _TrackRow:
    """A stopping criterion feeding row `row`'s every new token to the tracker; stops when the row is done."""

    def __init__(self, tracker: "_RowTracker", row: int) -> None:
        self.tracker, self.row = tracker, row

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = self.tracker.advance(self.row, int(input_ids[0, -1]))
        return torch.tensor([done], device=input_ids.device)


class _RowTracker:
    """Per-row state during decoding: tokens so far, text already emitted, stop strings, limits."""

    def __init__(self, rows: list[tuple[Job, int]], tokenizer, stop_ids: set[int]) -> None:
        self.rows, self.tokenizer, self.stop_ids = rows, tokenizer, stop_ids
        self.ids: list[list[int]] = [[] for _ in rows]
        self.sent = [0] * len(rows)  # characters of the decoded text already emitted
        self.done = [False] * len(rows)
        self.total_tokens = 0

    def step(self, tokens):
        import torch

        for r, token in enumerate(tokens.tolist()):
            self.advance(r, token)
        return torch.tensor(self.done)

    def advance(self, r: int, token: int) -> bool:
        """Row `r` generated `token`: emit what is safe to send, finish the row at a stop or its limit;
        whether the row is done."""
        if self.done[r]:
            return True
        job, index = self.rows[r]
        if job.cancelled:
            self._finish(r, "cancelled", self._text(r))
            return True
        if token in self.stop_ids and not job.ignore_eos:
            self._finish(r, "stop", self._text(r))
            return True
        self.ids[r].append(token)
        self.total_tokens += 1
        text = self._text(r)
        cut = min((text.find(s) for s in job.stop if s and s in text), default=-1)
        if cut >= 0:
            self._finish(r, "stop", text[:cut])
        elif len(self.ids[r]) >= job.max_tokens:
            self._finish(r, "length", text)
        else:
            hold = max((len(s) - 1 for s in job.stop), default=0)  # a stop string may be starting
            safe = len(text) - hold if not text.endswith("\ufffd") else len(text.rstrip("\ufffd")) - hold
            if safe > self.sent[r]:
                job.emit({"type": "token", "index": index, "text": text[self.sent[r]:safe]})
                self.sent[r] = safe
        return self.done[r]

    def finish_all(self) -> None:
        for r in range(len(self.rows)):
            self.finish_row(r)

    def finish_row(self, r: int) -> None:
        """End row `r` at its length limit, unless it has ended already."""
        if not self.done[r]:
            self._finish(r, "length", self._text(r))

    def _text(self, r: int) -> str:
        return self.tokenizer.decode(self.ids[r], skip_special_tokens=True)

    def _finish(self, r: int, reason: str, text: str) -> None:
        job, index = self.rows[r]
        if len(text) > self.sent[r]:
            job.emit({"type": "token", "index": index, "text": text[self.sent[r]:]})
        self.sent[r] = len(text)
        self.done[r] = True
        job.emit({"type": "finish", "index": index, "reason": reason, "tokens": len(self.ids[r])})


def _sampler(jobs: list[Job]):
    """pick(logits) for a batch whose jobs each have their own temperature, top_p and seed."""
    import torch

    spans, start = [], 0
    for job in jobs:
        generator = torch.Generator().manual_seed(job.seed) if job.seed is not None else None
        spans.append((start, start + job.n, job, generator))
        start += job.n

    def pick(logits):
        tokens = logits.argmax(dim=-1)
        for begin, end, job, generator in spans:
            if job.temperature > 0:
                tokens[begin:end] = pick_next(logits[begin:end], job.temperature, job.top_p, generator)
        return tokens

    return pick


def _collector(results: dict, texts: dict):
    def emit(event: dict) -> None:
        if event["type"] == "token":
            texts[event["index"]] = texts.get(event["index"], "") + event["text"]
        elif event["type"] == "finish":
            results[event["index"]] = Choice(texts.get(event["index"], ""), event["reason"], event["tokens"])
        else:
            raise event["error"]

    return emit


def read_adapter(name: str, path: str | Path, source) -> AdapterInfo:
    """Validate an adapter artifact for serving on `source` (the loaded base): hone.json, a method that
    says it can share a batch with other adapters, the same base."""
    check_name(name)
    directory = adapter_dir(path)
    manifest = read_manifest(directory)
    method, settings = serving_method(manifest, directory)
    if not method.side_by_side(settings):
        raise ModelError(f"method {method.name} cannot be served side by side with other adapters "
                         f"({why_alone(settings)})", where=str(directory), hint=method.serving_hint())
    base = manifest.get("base_model", {})
    if base.get("sha256") and source.sha256 and base["sha256"] != source.sha256:
        raise ModelError(f"adapter {name!r} was trained on {base.get('id')!r}, not on the served base {source.id!r}",
                         where=str(directory), hint="serve it with --model set to the base it was trained on")
    return AdapterInfo(name=name, path=directory, chat_template=manifest.get("chat_template"),
                       manifest=manifest, created=directory.stat().st_mtime)


def why_alone(settings) -> str:
    """Why an artifact's method settings keep it from sharing a batch with other adapters."""
    whole = whole_parts(settings) if isinstance(settings, LoraOptions) else set()
    if whole:
        parts = " and ".join(sorted(part.replace("_", " ") for part in whole))
        return f"it trains the {parts} whole, which replaces the shared base's own"
    return "only plain LoRA weights share a batch"


def serving_method(manifest: dict, directory: Path) -> tuple[Method, object]:
    """The method an artifact's hone.json names (it says how the artifact is served) and its settings."""
    name = manifest.get("method", {}).get("type")
    if name not in METHODS:
        raise ModelError(f"hone.json names method {name!r}, which this hone does not know", where=str(directory),
                         hint=f"methods: {', '.join(METHODS)}; train the adapter again with this hone")
    method = METHODS[name]
    try:
        return method, method.Config.model_validate(manifest["method"])
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise ModelError(f"hone.json: method.{'.'.join(map(str, problem['loc']))}: {problem['msg']}",
                         where=str(directory)) from None
