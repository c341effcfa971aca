"""GET /v1/service/status: the service's worker processes (hone's addition), for a project key."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from hone.serve import protocol
from hone.serve.routes.project_scope import require_project

router = APIRouter()


@router.get("/service/status", response_model=protocol.ServiceStatus)
def service_status(request: Request, project: str = Depends(require_project)) -> protocol.ServiceStatus:
    family = request.app.state.workers
    if family is None:  # workers run elsewhere (`hone worker` on other machines)
        return protocol.ServiceStatus(workers=protocol.WorkerCount(configured=0, alive=0, respawned=0))
    return protocol.ServiceStatus(workers=protocol.WorkerCount(configured=family.count, alive=family.alive(),
                                                               respawned=family.respawned))
