"""`/v1/fine_tuning/jobs` in OpenAI's shape: create, list, retrieve, cancel, pause, resume, events
(also as a server-sent event stream with `?stream=true`) and checkpoints. Every lookup is limited to
the project of the request's API key: another project's job answers 404, like one that does not exist."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from hone.errors import NotFoundError
from hone.jobs import service
from hone.jobs.service import ENDED, not_found, report_page
from hone.serve import protocol
from hone.serve.routes.project_scope import require_project, settings_of, store_of

router = APIRouter()
PAGE = Query(None, ge=1, le=100)


def _job_object(row: dict) -> protocol.JobObject:
    return protocol.JobObject.from_row(row, has_report=report_page(row) is not None)


@router.post("/fine_tuning/jobs", response_model=protocol.JobObject)
async def create_job(body: protocol.JobRequest, request: Request,
                     project: str = Depends(require_project)) -> protocol.JobObject:
    row = await asyncio.to_thread(service.create_job, store_of(request), settings_of(request), project,
                                  body.model_dump(exclude_unset=True))
    return _job_object(row)


@router.get("/fine_tuning/jobs", response_model=protocol.JobList)
def list_jobs(request: Request, after: str | None = None, limit: int | None = PAGE,
              project: str = Depends(require_project)) -> protocol.JobList:
    count = limit or 20
    wanted = {key[len("metadata["):-1]: value for key, value in request.query_params.items()
              if key.startswith("metadata[") and key.endswith("]")}
    rows = store_of(request).list_jobs(project, after=after, limit=count + 1, metadata_filter=wanted)
    return protocol.page(protocol.JobList, [_job_object(r) for r in rows[:count]], len(rows) > count)


@router.get("/fine_tuning/jobs/{job_id}", response_model=protocol.JobObject)
def retrieve_job(request: Request, job_id: str, project: str = Depends(require_project)) -> protocol.JobObject:
    return _job_object(_job(request, project, job_id))


@router.post("/fine_tuning/jobs/{job_id}/cancel", response_model=protocol.JobObject)
def cancel_job(request: Request, job_id: str, project: str = Depends(require_project)) -> protocol.JobObject:
    return _job_object(service.cancel_job(store_of(request), _job(request, project, job_id)))


@router.post("/fine_tuning/jobs/{job_id}/pause", response_model=protocol.JobObject)
def pause_job(request: Request, job_id: str, project: str = Depends(require_project)) -> protocol.JobObject:
    return _job_object(service.pause_job(store_of(request), _job(request, project, job_id)))


@router.post("/fine_tuning/jobs/{job_id}/resume", response_model=protocol.JobObject)
def resume_job(request: Request, job_id: str, project: str = Depends(require_project)) -> protocol.JobObject:
    return _job_object(service.resume_job(store_of(request), _job(request, project, job_id)))


@router.get("/fine_tuning/jobs/{job_id}/events", response_model=protocol.JobEventList,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
def list_events(request: Request, job_id: str, after: str | None = None, limit: int | None = PAGE,
                stream: bool = False, project: str = Depends(require_project)):
    """Newest first, `after` an event id (older ones follow); `stream=true` sends every event oldest
    first as server-sent events, then new ones as they happen, and `data: [DONE]` once the job ended."""
    _job(request, project, job_id)
    store = store_of(request)
    after_seq = protocol.JobEvent.seq(after)
    if stream:
        return StreamingResponse(_event_stream(request, job_id, after_seq), media_type="text/event-stream")
    count = limit or 20
    rows = store.list_events(job_id, before_seq=after_seq, limit=count + 1)
    return protocol.page(protocol.JobEventList, [protocol.JobEvent.from_row(r) for r in rows[:count]],
                         len(rows) > count)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints", response_model=protocol.JobCheckpointList)
def list_checkpoints(request: Request, job_id: str, after: str | None = None, limit: int | None = PAGE,
                     project: str = Depends(require_project)) -> protocol.JobCheckpointList:
    _job(request, project, job_id)
    count = limit or 10
    rows = store_of(request).list_checkpoints(job_id, after=after, limit=count + 1)
    return protocol.page(protocol.JobCheckpointList, [protocol.JobCheckpoint.from_row(r) for r in rows[:count]],
                         len(rows) > count)


@router.get("/fine_tuning/jobs/{job_id}/report", response_class=HTMLResponse)
def job_report(request: Request, job_id: str, project: str = Depends(require_project)):
    """hone's addition: the run's `hone report` page (figures inlined), linked from the job as `report`."""
    page = report_page(_job(request, project, job_id))
    if page is None:
        raise NotFoundError(f"job {job_id} has no eval report; its `results` hold the tuned model's metrics "
                            "(`hone report RUN` on the job's run writes one)", param="job_id", code="not_found")
    return HTMLResponse(page.read_text(encoding="utf-8"))


async def _event_stream(request: Request, job_id: str, after_seq: int | None, poll: float = 0.5):
    store = store_of(request)
    seen = after_seq or 0
    idle = 0.0
    while not await request.is_disconnected():
        rows = await asyncio.to_thread(store.list_events, job_id, after_seq=seen, limit=1000, newest_first=False)
        for row in rows:
            seen = row["seq"]
            yield f"data: {protocol.JobEvent.from_row(row).model_dump_json()}\n\n"
        if not rows:
            job = await asyncio.to_thread(store.get_job, None, job_id)
            if job is None or job["status"] in ENDED:
                yield "data: [DONE]\n\n"
                return
            idle += poll
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
        await asyncio.sleep(poll)


def _job(request: Request, project: str, job_id: str) -> dict:
    row = store_of(request).get_job(project, job_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, "fine_tuning_job_id")
    return row
