"""`/v1/files` in OpenAI's shape: upload (validated like `hone data check`), list, retrieve, delete, content.

Only `purpose=fine-tune` is accepted. The content lives on local disk under the service's data dir;
a file that `hone data check` would reject is refused with its report in the error.
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse

from hone.jobs.http import page_limit, require_project, settings_of, store_of
from hone.jobs.objects import file_object, list_object
from hone.jobs.service import ServiceError, not_found
from hone.jobs.store import new_id

router = APIRouter()
PURPOSES = ("fine-tune",)


@router.post("/files")
def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                project: str = Depends(require_project)) -> dict:
    from hone.data.report import check_file

    settings, store = settings_of(request), store_of(request)
    if purpose not in PURPOSES:
        raise ServiceError(400, f"purpose {purpose!r} is not supported; use 'fine-tune'", param="purpose")
    file_id = new_id("file")
    folder = settings.data_dir / "files"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file_id}.jsonl"
    size = _copy_limited(file, path, settings.max_upload_bytes)
    name = Path(file.filename or "upload.jsonl").name
    report = check_file(path)
    report.path = name
    for issue in report.issues:
        issue.path = name
    if not report.ok:
        path.unlink(missing_ok=True)
        raise ServiceError(400, f"{name} is not valid fine-tuning data:\n{report.render()}", param="file",
                           code="invalid_file", extra={"report": report.to_dict()})
    row = store.add_file(project, {"id": file_id, "filename": name, "purpose": purpose, "bytes": size,
                                   "path": str(path), "report": report.to_dict(), "created_at": int(time.time())})
    return file_object(row)


@router.get("/files")
def list_files(request: Request, purpose: str | None = None, after: str | None = None, limit: str | None = None,
               order: str = "desc", project: str = Depends(require_project)) -> dict:
    if order not in ("asc", "desc"):
        raise ServiceError(400, "order must be 'asc' or 'desc'", param="order")
    count = page_limit(limit, 10000, 10000)
    rows = store_of(request).list_files(project, purpose=purpose, after=after, limit=count + 1,
                                        newest_first=order == "desc")
    return list_object([file_object(r) for r in rows[:count]], len(rows) > count)


@router.get("/files/{file_id}")
def retrieve_file(request: Request, file_id: str, project: str = Depends(require_project)) -> dict:
    return file_object(_file(request, project, file_id))


@router.get("/files/{file_id}/report")
def file_report(request: Request, file_id: str, project: str = Depends(require_project)) -> dict:
    """hone's addition: the full `hone data check` report of an uploaded file."""
    return _file(request, project, file_id)["report"] or {}


@router.delete("/files/{file_id}")
def delete_file(request: Request, file_id: str, project: str = Depends(require_project)) -> dict:
    store = store_of(request)
    row = _file(request, project, file_id)
    if store.file_in_use(project, file_id):
        raise ServiceError(409, f"file {file_id} is used by a job that has not ended; cancel the job first",
                           param="file_id", code="file_in_use")
    store.delete_file(project, file_id)
    Path(row["path"]).unlink(missing_ok=True)
    return {"id": file_id, "object": "file", "deleted": True}


@router.get("/files/{file_id}/content")
def file_content(request: Request, file_id: str, project: str = Depends(require_project)):
    row = _file(request, project, file_id)
    return FileResponse(row["path"], media_type="application/octet-stream", filename=row["filename"])


def _file(request: Request, project: str, file_id: str) -> dict:
    row = store_of(request).get_file(project, file_id)
    if row is None:
        raise not_found("file", file_id, "file_id")
    return row


def _copy_limited(upload: UploadFile, path: Path, limit: int) -> int:
    """Copy the upload to `path`; 413 (and nothing kept) when it is larger than `limit` bytes."""
    size = 0
    with open(path, "wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                break
            out.write(chunk)
    if size > limit:
        path.unlink(missing_ok=True)
        raise ServiceError(413, f"the file is larger than the upload limit of {limit:,} bytes", param="file",
                           code="file_too_large")
    return size
