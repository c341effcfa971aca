"""What the fine-tuning routes share: the API-key dependency, request parsing and OpenAI-shaped errors.

The routes find the store and settings on `app.state.jobs_store` / `app.state.jobs_settings`, so any
FastAPI app (hone's inference server, `create_service_app`) can mount them.
"""

from __future__ import annotations

from fastapi import Request

from hone.errors import HoneError
from hone.jobs.service import ServiceError, ServiceSettings
from hone.jobs.store import Store


def store_of(request: Request) -> Store:
    return request.app.state.jobs_store


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.jobs_settings


def require_project(request: Request) -> str:
    """The project of the request's API key (`Authorization: Bearer sk-hone-...`); 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ServiceError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                           "`hone service --new-key PROJECT`)", code="invalid_api_key")
    project = store_of(request).project_for_key(key.strip())
    if project is None:
        raise ServiceError(401, "incorrect API key provided", code="invalid_api_key")
    return project


async def json_object(request: Request) -> dict:
    """The request body as a JSON object; 400 for a body that is not one."""
    import json

    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ServiceError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def page_limit(value: str | None, default: int, maximum: int = 100) -> int:
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ServiceError(400, f"limit must be an integer in [1, {maximum}], got {value!r}", param="limit")
    return int(value)


def install_error_handlers(app) -> None:
    """Every error leaves as {"error": {message, type, param, code}} with a 4xx status (500 only for a bug)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def shaped(status: int, message: str, *, param=None, code=None, type="invalid_request_error"):
        return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                            status_code=status)

    @app.exception_handler(ServiceError)
    async def _service(_request, exc: ServiceError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HoneError)
    async def _hone(_request, exc: HoneError):
        return shaped(400, str(exc), param=exc.where or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path", "header"))
        return shaped(400, f"{param or 'request'}: {first['msg']}", param=param or None)

    @app.exception_handler(HTTPException)
    async def _http(_request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return shaped(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(Exception)
    async def _bug(_request, exc: Exception):
        return shaped(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")


def install_upload_limit(app, path: str = "/v1/files") -> None:
    """Refuse an upload whose Content-Length is over the limit before its body is read (413)."""
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def _limit(request: Request, call_next):
        length = request.headers.get("content-length", "")
        limit = settings_of(request).max_upload_bytes + 64 * 1024  # room for the multipart envelope
        if request.method == "POST" and request.url.path == path and length.isdigit() and int(length) > limit:
            error = ServiceError(413, f"the upload is larger than the limit of "
                                 f"{settings_of(request).max_upload_bytes:,} bytes", param="file",
                                 code="file_too_large")
            return JSONResponse(error.body(), status_code=413)
        return await call_next(request)
