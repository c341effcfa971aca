"""What every route of one server shares: `ServeState` (settings, engines, keys, metrics, request log,
feedback memory), found from a request with `state_of(request)`."""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from fastapi import Request

from hone.data.images import FileResolver, ImageLimits
from hone.infer.engine import Engine
from hone.infer.pool import EnginePool
from hone.serve.auth import Authenticator, KeyChecker, KeyFile
from hone.serve.errors import ApiError
from hone.serve.feedback import FeedbackFile, ResponseMemory
from hone.serve.metrics import RequestLog, ServeMetrics
from hone.serve.settings import ServeSettings


class ServeState:
    """What every route shares: settings, the engine, keys, metrics, request log, feedback memory."""

    def __init__(self, settings: ServeSettings, engine, *, auth: KeyChecker | None = None, catalog=None) -> None:
        self.settings = settings
        self.engine = engine
        self.base_name = engine.source.id
        self.auth = auth or Authenticator(KeyFile(settings.keys_path()), settings.api_keys)
        self.catalog = catalog
        self.engines = EnginePool(engine, self._load_base, settings.max_bases)
        """The served base's engine and, for catalog models tuned from other bases, theirs."""
        self.body_limits: dict[str, tuple[int, str, str | None]] = {}
        """path → (bytes, error code, param): a larger limit for one route, e.g. file uploads."""
        self.metrics = ServeMetrics()
        self.log = RequestLog(settings.request_log, content=settings.log_content)
        self.memory = ResponseMemory(settings.feedback_window)
        self.feedback = FeedbackFile(settings.feedback_path())
        self.uploaded_images: Callable[[str], FileResolver] | None = None
        """A project's uploaded images (`hone service` sets it): a chat request's `file-...` image url
        is read from its own project's files; None, and such urls are refused."""
        self.on_start: list = []
        """Callables run when the server starts, and (`on_stop`) when it stops, e.g. its worker processes."""
        self.on_stop: list = []

    def authorize(self, request: Request, model: str | None = None, *, admin: bool = False):
        key = self.auth.check(request.headers.get("authorization"), model=model, admin=admin)
        request.state.key_id = key.id if key else None
        request.state.project = key.project if key else None
        return key

    async def resolve(self, model: str):
        """The one place a request's `model` becomes (engine, adapter name or None): the served base, an
        adapter registered on it, or a catalog model (a finished fine-tuning job, or the base one was
        tuned from) on its base's engine, which loads on demand; its adapter registers on first use."""
        if model == self.base_name:
            return self.engine, None
        if self.catalog is None or model in self.engine.registry.adapters:
            self.engine.registry.get(model)  # 404 for an unknown name
            return self.engine, model
        base, adapter = self.catalog.locate(model, self.engine.source)
        if base == self.base_name:
            engine = self.engine
        elif self.settings.max_bases < 2:
            raise ApiError(400, f"the model {model!r} needs the base {base!r}, and this server serves only "
                           f"{self.base_name!r}; allow more bases (--max-bases) or serve that base",
                           param="model", code="model_base_mismatch")
        else:
            engine = await asyncio.to_thread(self.engines.get, base)
        if adapter is not None and adapter not in engine.registry.adapters:
            await asyncio.to_thread(self.catalog.register, engine, adapter)
        return engine, adapter

    def _load_base(self, spec: str):
        return self.configure(Engine.from_spec(spec))

    def configure(self, engine):
        """Apply the server's batching and adapter-cache settings and its metrics to an engine."""
        settings = self.settings
        engine.max_batch_rows = settings.max_batch_rows
        engine.batch_wait_s = settings.batch_wait_ms / 1000
        engine.registry.max_loaded = settings.max_loaded_adapters
        engine.registry.max_bytes = settings.max_adapter_bytes
        engine.on_batch = self.metrics.on_batch
        engine.registry.on_event = cache_events(self)
        return engine

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.settings.max_image_bytes, max_images=self.settings.max_images)

    def files_for(self, request: Request) -> FileResolver | None:
        """The uploaded images a request may name: its project's, when the service keeps files."""
        project = getattr(request.state, "project", None)
        return self.uploaded_images(project) if self.uploaded_images is not None and project else None

    def remember(self, ex, messages: list[dict] | None, texts: list[str] | None) -> None:
        answers = [ex.texts.get(i, "") for i in sorted(ex.finish)]
        record = {"model": ex.model, "project": ex.project, "kind": ex.kind, "answers": answers, "n": ex.body.n}
        if messages is not None:
            record["messages"] = messages
        else:
            record["prompts"] = texts
        self.memory.remember(ex.id, record)

    def log_exchange(self, request: Request, ex, *, status: int) -> None:
        content = {"answers": [ex.texts.get(i, "") for i in sorted(ex.texts)]}
        if isinstance(getattr(ex.body, "messages", None), list):
            content["messages"] = [m.model_dump() for m in ex.body.messages]
        self.log.write({"id": ex.id, "route": request.url.path, "status": status, "model": ex.model,
                        "stream": ex.body.stream, "n": ex.body.n,
                        "prompt_tokens": sum(len(p) for p in ex.prompts) * ex.body.n,
                        "completion_tokens": sum(ex.tokens.values()),
                        "latency_ms": round((time.monotonic() - ex.started) * 1000, 1),
                        "ttft_ms": round((ex.first_token - ex.started) * 1000, 1) if ex.first_token else None,
                        "key": getattr(request.state, "key_id", None)}, content)


def state_of(request: Request) -> ServeState:
    return request.app.state.hone


def cache_events(state: ServeState):
    def on_event(event: str, name: str) -> None:
        state.metrics.on_cache_event(event, name)
        state.metrics.adapters_loaded.set(sum(len(e.registry.loaded) for e in state.engines.engines()))

    return on_event
