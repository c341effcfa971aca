"""The OpenAPI document, true to the server: the error statuses each operation can answer with, in
OpenAI's error shape (`ErrorResponse`), instead of the framework's 422 that hone never sends."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hone.serve.protocol import ErrorResponse

REASONS = {400: "The request is invalid; `param` names the field", 401: "No API key, or an unknown one",
           403: "The key may not do this (an admin endpoint, a model outside its scope)",
           404: "No such object, or one of another project (the two look the same)",
           409: "The object's state does not allow this", 413: "The request body is larger than the limit",
           429: "The project has as many jobs that have not ended as it may have"}
_CONFLICTS = ("/cancel", "/pause", "/resume")


def error_statuses(path: str, method: str, operation: dict) -> list[int]:
    """The error statuses the operation `method path` answers with."""
    body = "requestBody" in operation
    statuses = {401}
    if body or operation.get("parameters"):
        statuses.add(400)
    if body:
        statuses.add(413)
    if "{" in path or body and path.endswith(("completions", "feedback")):
        statuses.add(404)
    if path.startswith("/admin") or path == "/metrics" or path.endswith(("completions", "feedback")) or \
            path == "/v1/models/{name}":
        statuses.add(403)
    if path.endswith(_CONFLICTS) or (method == "delete" and path.startswith("/v1/files")):
        statuses.add(409)
    if method == "post" and path == "/v1/fine_tuning/jobs":
        statuses.add(429)
    return sorted(statuses)


def openapi_document(app: FastAPI) -> dict:
    """The app's OpenAPI document (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas["ErrorResponse"] = error
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in error_statuses(path, method, operation):
                responses[str(status)] = {"description": REASONS[status], "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    app.openapi_schema = doc
    return doc
