"""Uploaded files: checked like `hone data check`, then written and recorded together, or not at all.

Everything the service keeps (its data directory, uploads, the database, logs, feedback) is private to
the user running it: directories 0700, files 0600.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from hone.data.report import check_file
from hone.errors import ConflictError, RequestError, TooLargeError
from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store, new_id
from hone.paths import private_dir, private_file

PURPOSES = ("fine-tune",)
CHUNK = 1 << 20


def add_upload(store: Store, settings: ServiceSettings, project: str, content: BinaryIO, filename: str | None,
               purpose: str) -> dict:
    """Check the upload and keep it: the file under DATA/files and its row, both or neither. A file that
    `hone data check` would reject is refused with its report; one over the size limit with a 413."""
    if purpose not in PURPOSES:
        raise RequestError(f"purpose {purpose!r} is not supported; use 'fine-tune'", param="purpose")
    file_id = new_id("file")
    folder = private_dir(settings.data_dir / "files")
    path = folder / f"{file_id}.jsonl"
    partial = folder / f".{file_id}.part"
    name = Path(filename or "upload.jsonl").name
    try:
        size = _copy_limited(content, partial, settings.max_upload_bytes)
        report = check_file(partial)
        report.path = name
        for issue in report.issues:
            issue.path = name
        if not report.ok:
            raise RequestError(f"{name} is not valid fine-tuning data:\n{report.render()}", param="file",
                               code="invalid_file", extra={"report": report.to_dict()})
        os.replace(partial, path)
        return store.add_file(project, {"id": file_id, "filename": name, "purpose": purpose, "bytes": size,
                                        "path": str(path), "report": report.to_dict(),
                                        "created_at": int(time.time())})
    except BaseException:
        partial.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise


def delete_file(store: Store, project: str, row: dict) -> None:
    """Forget the file and remove its content; refused while a job that has not ended uses it."""
    if store.file_in_use(project, row["id"]):
        raise ConflictError(f"file {row['id']} is used by a job that has not ended; cancel the job first",
                            param="file_id", code="file_in_use")
    store.delete_file(project, row["id"])
    Path(row["path"]).unlink(missing_ok=True)


def _copy_limited(content: BinaryIO, path: Path, limit: int) -> int:
    size = 0
    with private_file(path) as out:
        while chunk := content.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"the file is larger than the upload limit of {limit:,} bytes", param="file",
                                    code="file_too_large")
            out.write(chunk)
    return size
