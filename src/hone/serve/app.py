"""The FastAPI app: `create_app(settings)` wires the engine, keys, limits, metrics, log and routes.

The app is composable: pass `routers=[...]` (or call `app.include_router` afterwards) to mount
more endpoints, e.g. the fine-tuning jobs service; they reach the shared state through
`state_of(request)`. `auth` replaces the key file's keys (anything with `check(authorization, *,
model, admin)` returning a key with `id` and `allows(model)`), and `catalog` adds models that are
registered in the engine on their first request (`cards(key)`, `register(engine, name)`), as
`hone service` does with its projects' keys and finished fine-tuning jobs.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Iterable

from fastapi import APIRouter, FastAPI, Request

from hone.errors import HoneError
from hone.infer.pool import EnginePool
from hone.serve.auth import Authenticator, KeyFile
from hone.serve.errors import ApiError, from_exception, install_error_handlers
from hone.serve.feedback import FeedbackFile, ResponseMemory
from hone.serve.metrics import RequestLog, ServeMetrics
from hone.serve.settings import ServeSettings


class ServeState:
    """What every route shares: settings, the engine, keys, metrics, request log, feedback memory."""

    def __init__(self, settings: ServeSettings, engine, *, auth=None, catalog=None) -> None:
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

    def authorize(self, request: Request, model: str | None = None, *, admin: bool = False):
        key = self.auth.check(request.headers.get("authorization"), model=model, admin=admin)
        request.state.key_id = key.id if key else None
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
        from hone.infer.engine import Engine

        return self.configure(Engine.from_spec(spec))

    def configure(self, engine):
        """Apply the server's batching and adapter-cache settings and its metrics to an engine."""
        settings = self.settings
        engine.max_batch_rows = settings.max_batch_rows
        engine.batch_wait_s = settings.batch_wait_ms / 1000
        engine.registry.max_loaded = settings.max_loaded_adapters
        engine.registry.max_bytes = settings.max_adapter_bytes
        engine.on_batch = self.metrics.on_batch
        engine.registry.on_event = _cache_events(self)
        return engine

    def remember(self, ex, messages: list[dict] | None, texts: list[str] | None) -> None:
        answers = [ex.texts.get(i, "") for i in sorted(ex.finish)]
        record = {"model": ex.model, "kind": ex.kind, "answers": answers, "n": ex.body.n}
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


def create_app(settings: ServeSettings | None = None, *, engine=None, routers: Iterable[APIRouter] = (),
               auth=None, catalog=None) -> FastAPI:
    """The server app; loads `settings.model` unless an `engine` (already loaded) is given."""
    from hone.infer.engine import Engine

    settings = settings or ServeSettings()
    if engine is None:
        engine = Engine.from_spec(settings.model)
    state = ServeState(settings, engine, auth=auth, catalog=catalog)
    state.configure(engine)
    for name, path in settings.adapters.items():
        engine.register(name, path, replace=True)
    if settings.adapters_dir:
        engine.register_dir(settings.adapters_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            state.engines.stop()
            engine.stop()
            state.log.close()

    app = FastAPI(title="hone", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hone = state
    install_error_handlers(app)
    _add_middleware(app, state)
    from hone.serve.routes import admin, completions, feedback, models

    for router in (models.router, completions.router, admin.router, feedback.router, *routers):
        app.include_router(router)
    return app


def _cache_events(state: ServeState):
    def on_event(event: str, name: str) -> None:
        state.metrics.on_cache_event(event, name)
        state.metrics.adapters_loaded.set(sum(len(e.registry.loaded) for e in state.engines.engines()))

    return on_event


def _add_middleware(app: FastAPI, state: ServeState) -> None:
    limit = state.settings.max_body_bytes

    @app.middleware("http")
    async def limits_metrics_log(request: Request, call_next):
        started = time.monotonic()
        route = request.url.path
        try:
            most, code, param = state.body_limits.get(route, (limit, "request_too_large", None))
            too_large = ApiError(413, f"the request body is larger than this server's limit of {most:,} bytes",
                                 code=code, param=param)
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > most):
                raise too_large
            if length is None and request.method in ("POST", "PUT", "PATCH"):
                if len(await request.body()) > most:  # chunked uploads: read, then measure
                    raise too_large
            response = await call_next(request)
        except (ApiError, HoneError, Exception) as error:  # noqa: BLE001 - shaped, counted, logged below
            response = from_exception(error).response()
        status = response.status_code
        matched = request.scope.get("route")  # the route's template: metric labels stay few
        label = getattr(matched, "path", None) or "unmatched"
        state.metrics.requests.labels(label, str(status)).inc()
        if status >= 400:
            state.metrics.errors.labels(label, str(status)).inc()
        ex = getattr(request.state, "exchange", None)
        if ex is None or not ex.body.stream or status >= 400:  # a stream observes its own end
            state.metrics.latency.labels(label).observe(time.monotonic() - started)
        if ex is None or not ex.body.stream or status >= 400:
            if ex is not None:
                state.log_exchange(request, ex, status=status)
            elif route != "/metrics":
                state.log.write({"route": route, "method": request.method, "status": status,
                                 "latency_ms": round((time.monotonic() - started) * 1000, 1),
                                 "key": getattr(request.state, "key_id", None)})
        return response
