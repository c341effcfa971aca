"""Every failure over HTTP becomes OpenAI's error JSON `{"error": {message, type, param, code}}`.

This is the one place that maps hone's errors (`HoneError` and its kinds) to HTTP statuses. Bad
requests are 4xx; an unexpected exception is a 500 in the same shape, without a traceback.
"""

from __future__ import annotations

import json
import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hone.errors import ConflictError, ForbiddenError, HoneError, NotFoundError, QuotaError, RequestError, TooLargeError
from hone.infer.registry import UnknownModel

log = logging.getLogger("hone.serve")


class ApiError(HoneError):
    """An HTTP error with OpenAI's fields (`extra` adds hone's own, e.g. a data file's report)."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message, where=param or "")
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.extra = extra or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


# hone's error kinds -> (HTTP status, OpenAI error type); the first kind the error is wins
STATUSES = ((UnknownModel, 404, "invalid_request_error"), (NotFoundError, 404, "invalid_request_error"),
            (ConflictError, 409, "invalid_request_error"), (ForbiddenError, 403, "permission_error"),
            (QuotaError, 429, "rate_limit_error"),
            (TooLargeError, 413, "invalid_request_error"))


def from_hone_error(error: HoneError) -> ApiError:
    """hone's error kinds → HTTP: an unknown model or object is 404, a state conflict 409, a forbidden change
    403, a quota 429, a size limit 413; anything else the caller got wrong is 400."""
    message = f"{error.what}" + (f" (hint: {error.hint})" if error.hint else "")
    status, kind = next(((s, k) for cls, s, k in STATUSES if isinstance(error, cls)), (400, "invalid_request_error"))
    if isinstance(error, UnknownModel):
        return ApiError(status, message, param="model", code="model_not_found")
    if isinstance(error, RequestError):
        return ApiError(status, message, type=kind, param=error.param, code=error.code,
                        extra=error.extra)
    code = getattr(error, "code", None) or _KIND_CODES.get(type(error).__name__, "invalid_request")
    return ApiError(status, message, param=error.where or None, code=code)


_KIND_CODES = {"ModelError": "invalid_model", "ConfigError": "invalid_config", "DataError": "invalid_data"}


def from_exception(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, HoneError):
        return from_hone_error(error)
    log.exception("internal error", exc_info=error)
    return ApiError(500, f"internal error ({type(error).__name__}); the server log has the details",
                    type="server_error", code="internal_error")


_STATUS_CODES = {400: "bad_request", 401: "invalid_api_key", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, error: ApiError):
        return error.response()

    @app.exception_handler(HoneError)
    async def _hone(request: Request, error: HoneError):
        return from_hone_error(error).response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        return validation_error(error.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException):
        status = error.status_code if 400 <= error.status_code < 600 else 400
        allowed = documented_methods(request) if status in (404, 405) else set()
        if status == 404 and allowed and request.method not in allowed:  # an API path, asked with another method
            status, error.detail = 405, "Method Not Allowed"
        response = ApiError(status, str(error.detail), code=_STATUS_CODES.get(status)).response()
        if status == 405:
            response.headers["Allow"] = ", ".join(sorted(allowed or {"GET", "HEAD"}))  # none: the static pages
        return response

    @app.exception_handler(Exception)
    async def _anything(request: Request, error: Exception):
        return from_exception(error).response()


def documented_methods(request: Request) -> set[str]:
    """The methods the OpenAPI document gives for the request's path (HEAD beside GET); none if it lists none."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    return methods | {"HEAD"} if "GET" in methods else methods


def validation_error(errors: list[dict]) -> ApiError:
    """The first pydantic/JSON problem as a 400 naming the field (`messages.0.role`)."""
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return ApiError(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                        code="invalid_json")
    sent = first.get("input")
    if tuple(first.get("loc", ())) == ("body",) and isinstance(sent, (bytes, str)):  # sent without a JSON type
        try:
            json.loads(sent)
        except ValueError as exc:
            return ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json")
        return ApiError(400, "send the request body as JSON, with 'Content-Type: application/json'",
                        code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    if first.get("type") == "missing" and param:
        message = f"{param}: required"
    else:
        message = f"{param}: {first['msg']}" if param else first["msg"]
    extra = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return ApiError(400, message + extra, param=param, code="invalid_value")
