"""Checkpoint permissions (`/v1/fine_tuning/checkpoints/{checkpoint}/permissions`), the alpha graders
(`/v1/fine_tuning/alpha/graders/run` and `/validate`) and `DELETE /v1/models/{name}`, in OpenAI's
shapes; the work is done in `hone.jobs.model_access` and `hone.jobs.graders`."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request

from hone.jobs import model_access
from hone.jobs.graders import run_grader, validate_grader
from hone.serve import protocol
from hone.serve.routes.project_scope import require_project, settings_of, store_of
from hone.serve.state import state_of

router = APIRouter()
PERMISSIONS = "/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions"


@router.post(PERMISSIONS, response_model=protocol.CheckpointPermissionList)
def create_permissions(request: Request, fine_tuned_model_checkpoint: str, body: protocol.PermissionRequest,
                       project: str = Depends(require_project)) -> protocol.CheckpointPermissionList:
    rows = model_access.grant_checkpoint(store_of(request), project, fine_tuned_model_checkpoint, body.project_ids)
    return protocol.page(protocol.CheckpointPermissionList, [protocol.CheckpointPermission.from_row(r) for r in rows],
                         False)


@router.get(PERMISSIONS, response_model=protocol.CheckpointPermissionList)
def list_permissions(request: Request, fine_tuned_model_checkpoint: str, after: str | None = None,
                     limit: int = Query(10, ge=1, le=100), order: Literal["ascending", "descending"] = "descending",
                     project_id: str | None = None,
                     project: str = Depends(require_project)) -> protocol.CheckpointPermissionList:
    store = store_of(request)
    model_access.own_checkpoint(store, project, fine_tuned_model_checkpoint)
    rows = store.list_permissions(fine_tuned_model_checkpoint, project_id=project_id, after=after, limit=limit + 1,
                                  newest_first=order == "descending")
    return protocol.page(protocol.CheckpointPermissionList,
                         [protocol.CheckpointPermission.from_row(r) for r in rows[:limit]], len(rows) > limit)


@router.delete(PERMISSIONS + "/{permission_id}", response_model=protocol.CheckpointPermissionDeleted)
def delete_permission(request: Request, fine_tuned_model_checkpoint: str, permission_id: str,
                      project: str = Depends(require_project)) -> protocol.CheckpointPermissionDeleted:
    model_access.revoke_checkpoint(store_of(request), project, fine_tuned_model_checkpoint, permission_id)
    return protocol.CheckpointPermissionDeleted(id=permission_id, deleted=True)


@router.post("/fine_tuning/alpha/graders/validate", response_model=protocol.GraderValidateResponse)
def validate(request: Request, body: protocol.GraderValidateRequest,
             project: str = Depends(require_project)) -> protocol.GraderValidateResponse:
    allow_python = settings_of(request).allow_python_graders
    return protocol.GraderValidateResponse(**validate_grader(body.grader, allow_python=allow_python))


@router.post("/fine_tuning/alpha/graders/run", response_model=protocol.GraderRunResponse)
async def run(request: Request, body: protocol.GraderRunRequest,
              project: str = Depends(require_project)) -> protocol.GraderRunResponse:
    """A python grader runs in its sandboxed subprocess, a judge model may load: off the event loop."""
    result = await asyncio.to_thread(run_grader, body.grader, body.model_sample, body.item,
                                     allow_python=settings_of(request).allow_python_graders)
    return protocol.GraderRunResponse(**result)


@router.delete("/models/{name:path}", response_model=protocol.ModelDeleted)
def delete_model(request: Request, name: str, project: str = Depends(require_project)) -> protocol.ModelDeleted:
    """One of the project's fine-tuned or checkpoint models, no longer callable; its adapter leaves memory."""
    state = state_of(request)
    key = state.authorize(request)
    model_access.delete_model(store_of(request), project, name, {state.base_name} | key.bases())
    for engine in state.engines.engines():
        if name in engine.registry.adapters:
            engine.unregister(name)
    return protocol.ModelDeleted(id=name, deleted=True)
