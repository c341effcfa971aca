"""What the files and jobs routes share: the project of the request's key, the store and settings.

The routes run in hone's inference app (`create_service_app`): they find the store and settings on
`app.state.jobs_store` / `app.state.jobs_settings`, and check keys with the app's authenticator
(`hone.serve.projects.ProjectAuthenticator`).
"""

from __future__ import annotations

from fastapi import Request

from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store
from hone.serve.state import state_of


def store_of(request: Request) -> Store:
    return request.app.state.jobs_store


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.jobs_settings


def require_project(request: Request) -> str:
    """The project of the request's API key (`Authorization: Bearer sk-hone-...`); 401 without a valid one."""
    return state_of(request).authorize(request).project
