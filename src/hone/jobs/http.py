"""What the fine-tuning routes share: the project of the request's key, the store, request parsing.

The routes run in hone's inference app (`create_service_app`): they find the store and settings on
`app.state.jobs_store` / `app.state.jobs_settings`, and check keys with the app's authenticator
(`hone.jobs.serving.ProjectAuthenticator`); errors are the app's OpenAI-shaped ones.
"""

from __future__ import annotations

from fastapi import Request

from hone.jobs.service import ServiceError, ServiceSettings
from hone.jobs.store import Store


def store_of(request: Request) -> Store:
    return request.app.state.jobs_store


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.jobs_settings


def require_project(request: Request) -> str:
    """The project of the request's API key (`Authorization: Bearer sk-hone-...`); 401 without a valid one."""
    from hone.serve.app import state_of

    return state_of(request).authorize(request).project


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
