"""The FastAPI app: `create_app(settings)` wires the engine, keys, limits, metrics, log and routes.

The app is composable: pass `routers=[...]` (or call `app.include_router` afterwards) to mount
more endpoints, e.g. the fine-tuning jobs service; they reach the shared state through
`state_of(request)`. `auth` replaces the key file's keys (a `hone.serve.auth.KeyChecker`, whose
keys are `RequestKey`s: an id, a project or None, and the models they allow), and `catalog` adds
models that are registered in the engine on their first request (`cards(key)`, `register(engine,
name)`), as `hone service` does with its projects' keys and finished fine-tuning jobs.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Iterable

from fastapi import APIRouter, FastAPI, Request

from hone.errors import HoneError
from hone.infer.engine import Engine
from hone.serve.errors import ApiError, from_exception, install_error_handlers
from hone.serve.openapi import openapi_document
from hone.serve.routes import admin, completions, feedback, models
from hone.serve.settings import ServeSettings
from hone.serve.state import ServeState


def create_app(settings: ServeSettings | None = None, *, engine=None, routers: Iterable[APIRouter] = (),
               auth=None, catalog=None) -> FastAPI:
    """The server app; loads `settings.model` unless an `engine` (already loaded) is given."""
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
        for start in state.on_start:
            start()
        try:
            yield
        finally:
            for stop in state.on_stop:
                stop()
            state.engines.stop()
            engine.stop()
            state.log.close()

    app = FastAPI(title="hone", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.hone = state
    app.openapi = lambda: openapi_document(app)
    install_error_handlers(app)
    _add_middleware(app, state)
    for router in (models.router, completions.router, admin.router, feedback.router, *routers):
        app.include_router(router)
    return app


def _add_middleware(app: FastAPI, state: ServeState) -> None:
    limit = state.settings.max_body_bytes

    @app.middleware("http")
    async def limits_metrics_log(request: Request, call_next):
        started = time.monotonic()
        route = request.url.path
        request.scope["query_string"] = _without_empty_values(request.scope.get("query_string", b""))
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


def _without_empty_values(query: bytes) -> bytes:
    """The query string without its empty values: `?after=&limit=` asks for what `?` asks for."""
    return b"&".join(pair for pair in query.split(b"&") if pair and not pair.endswith(b"="))
