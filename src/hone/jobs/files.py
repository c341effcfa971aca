"""Uploaded files: checked like `hone data check`, then written and recorded together, or not at all.

Two purposes: `fine-tune` (JSONL data) and `vision` (one PNG, JPEG, WEBP or GIF image). A training
record's image url may be the id of its own project's `vision` file (`ProjectImages` reads them; another
project's id is unknown, named by line like any bad image). The service reads no paths on its machine:
an image given as a path is refused by line. A job trains on a copy of its file with the ids resolved
into `data:` URLs (`resolved_data_file`), so deleting an image later leaves a queued job whole.

Everything the service keeps (its data directory, uploads, the database, logs, feedback) is private to
the user running it: directories 0700, files 0600.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from hone.data.images import ImageLimits, decode_image
from hone.data.record_errors import RecordError
from hone.data.report import check_file
from hone.errors import ConflictError, RequestError, TooLargeError
from hone.jobs.images import ProjectImages, refuse_image_paths
from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store, new_id
from hone.paths import private_dir, private_file

PURPOSES = ("fine-tune", "vision")
CHUNK = 1 << 20


def add_upload(store: Store, settings: ServiceSettings, project: str, content: BinaryIO, filename: str | None,
               purpose: str) -> dict:
    """Check the upload and keep it: the file under DATA/files and its row, both or neither. A file that
    `hone data check` would reject is refused with its report; one over the size limit with a 413."""
    if purpose not in PURPOSES:
        raise RequestError(f"purpose {purpose!r} is not supported; use 'fine-tune' (JSONL data) or 'vision' "
                           "(an image)", param="purpose")
    file_id = new_id("file")
    folder = private_dir(settings.data_dir / "files")
    partial = folder / f".{file_id}.part"
    name = Path(filename or "upload.jsonl").name
    if purpose == "vision":
        return _add_image(store, settings, project, content, name, file_id, partial)
    path = folder / f"{file_id}.jsonl"
    try:
        size = _copy_limited(content, partial, settings.max_upload_bytes)
        refuse_image_paths(partial, name)
        report = check_file(partial, files=ProjectImages(store, project))
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


def _add_image(store: Store, settings: ServiceSettings, project: str, content: BinaryIO, name: str, file_id: str,
               partial: Path) -> dict:
    """A `vision` upload: one still PNG, JPEG, WEBP or GIF image within the image size limit."""
    limits = ImageLimits()
    path = partial.parent / file_id
    try:
        size = _copy_limited(content, partial, min(settings.max_upload_bytes, limits.max_bytes))
        try:
            image = decode_image(partial.read_bytes(), field="file", limits=limits)
        except RecordError as error:
            raise RequestError(f"{name} is not an image hone reads: {error.message}", param="file",
                               code="invalid_file") from None
        os.replace(partial, path)
        report = {"ok": True, "image": {"width": image.width, "height": image.height}}
        return store.add_file(project, {"id": file_id, "filename": name, "purpose": "vision", "bytes": size,
                                        "path": str(path), "report": report, "created_at": int(time.time())})
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
