"""`/v1/files` in OpenAI's shape: upload (validated like `hone data check`), list, retrieve, delete, content.

`purpose=fine-tune` takes JSONL data, `purpose=vision` one image (PNG, JPEG, WEBP or GIF) that training
records and chat requests name by its id. The content lives on local disk under the service's data dir;
a file that `hone data check` would reject is refused with its report in the error.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from hone.jobs import files as stored_files
from hone.jobs.service import not_found
from hone.serve import protocol
from hone.serve.routes.project_scope import require_project, settings_of, store_of

router = APIRouter()


@router.post("/files", response_model=protocol.FileObject)
def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                project: str = Depends(require_project)) -> protocol.FileObject:
    row = stored_files.add_upload(store_of(request), settings_of(request), project, file.file, file.filename,
                                  purpose)
    return protocol.FileObject.from_row(row)


@router.get("/files", response_model=protocol.FileList)
def list_files(request: Request, purpose: str | None = None, after: str | None = None,
               limit: int = Query(10000, ge=1, le=10000), order: Literal["asc", "desc"] = "desc",
               project: str = Depends(require_project)) -> protocol.FileList:
    rows = store_of(request).list_files(project, purpose=purpose, after=after, limit=limit + 1,
                                        newest_first=order == "desc")
    return protocol.page(protocol.FileList, [protocol.FileObject.from_row(r) for r in rows[:limit]],
                         len(rows) > limit)


@router.get("/files/{file_id}", response_model=protocol.FileObject)
def retrieve_file(request: Request, file_id: str, project: str = Depends(require_project)) -> protocol.FileObject:
    return protocol.FileObject.from_row(_file(request, project, file_id))


@router.get("/files/{file_id}/report", response_model=dict)
def file_report(request: Request, file_id: str, project: str = Depends(require_project)) -> dict:
    """hone's addition: the full `hone data check` report of an uploaded file."""
    return _file(request, project, file_id)["report"] or {}


@router.delete("/files/{file_id}", response_model=protocol.FileDeleted)
def delete_file(request: Request, file_id: str, project: str = Depends(require_project)) -> protocol.FileDeleted:
    stored_files.delete_file(store_of(request), project, _file(request, project, file_id))
    return protocol.FileDeleted(id=file_id, deleted=True)


@router.get("/files/{file_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                  "format": "binary"}}}}})
def file_content(request: Request, file_id: str, project: str = Depends(require_project)):
    row = _file(request, project, file_id)
    return FileResponse(row["path"], media_type="application/octet-stream", filename=row["filename"])


def _file(request: Request, project: str, file_id: str) -> dict:
    row = store_of(request).get_file(project, file_id)
    if row is None:
        raise not_found("file", file_id, "file_id")
    return row
