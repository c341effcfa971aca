"""Images that training files name by upload: a project's `vision` files read by id (`ProjectImages`,
the data layer's `FileResolver`), the paths the service refuses to read, and the copy of a data file a
job trains on, its file ids resolved into `data:` URLs (`resolved_data_file`)."""

from __future__ import annotations

import json
from pathlib import Path

from hone.data.formats import Example, example_image_parts
from hone.data.images import FILE_ID, decode_image, image_bytes, image_data_url
from hone.data.read import iter_records
from hone.data.record_errors import RecordError
from hone.errors import RequestError
from hone.jobs.store import Store


class ProjectImages:
    """A project's uploaded images (purpose `vision`) by file id: the `FileResolver` that training records'
    `file-...` image urls are read through. Files of other projects do not exist here."""

    def __init__(self, store: Store, project: str) -> None:
        self.store, self.project = store, project

    def image_bytes(self, file_id: str) -> bytes:
        row = self.store.get_file(self.project, file_id)
        if row is None or row["purpose"] != "vision":
            raise KeyError(file_id)
        return Path(row["path"]).read_bytes()


def refuse_image_paths(path: Path, name: str) -> None:
    """Images given as paths: the service reads no file on its machine but the project's uploads."""
    problems = [f"{name}:{line}: {part['field']}: is a path ({part['url'][:80]}); the service reads images only "
                "from data: URLs and uploaded image files (POST /v1/files with purpose=vision, then the file id)"
                for line, example in iter_records(path) if isinstance(example, Example)
                for part in example_image_parts(example) if is_path(part["url"])]
    if problems:
        raise RequestError(f"{name} is not valid fine-tuning data:\n" + "\n".join(problems[:20]), param="file",
                           code="invalid_file")


def is_path(url: str) -> bool:
    return not url.startswith(("data:", "http://", "https://")) and not FILE_ID.fullmatch(url)


def resolved_data_file(store: Store, project: str, row: dict, out: Path, param: str) -> str:
    """The path a job trains on for uploaded data file `row`: its own, or (when its images name uploaded
    files) a copy at `out` with each `file-...` url replaced by the image as a data: URL."""
    text = Path(row["path"]).read_text(encoding="utf-8-sig")
    if "file-" not in text:
        return row["path"]
    images = ProjectImages(store, project)
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        record = json.loads(line) if line.strip() else None
        lines.append(json.dumps(_with_data_urls(record, images, f"{param}: file {row['id']} line {number}", param))
                     if record else line)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(out)


def _with_data_urls(value, images: ProjectImages, where: str, param: str):
    """`value` (a decoded record) with every image_url part's uploaded file id replaced by a data: URL."""
    if isinstance(value, list):
        return [_with_data_urls(item, images, where, param) for item in value]
    if not isinstance(value, dict):
        return value
    spec = value.get("image_url") if value.get("type") == "image_url" else None
    url = spec.get("url") if isinstance(spec, dict) else spec
    if isinstance(url, str) and FILE_ID.fullmatch(url):
        try:
            data = image_bytes(url, field="image_url.url", files=images)
        except RecordError as error:
            raise RequestError(f"{where}: {error}", param=param,
                               code=f"invalid_{param.removeprefix('hone.').replace('.', '_')}") from None
        return {**value, "image_url": {**(spec if isinstance(spec, dict) else {}), "url": _data_url(data)}}
    return {key: _with_data_urls(item, images, where, param) for key, item in value.items()}


def _data_url(data: bytes) -> str:
    return image_data_url(decode_image(data, field="image_url.url"))
