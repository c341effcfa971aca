"""Images of vision records: where an image url points (a `data:` URL, a local path, an uploaded file)
and the checks an image passes before any model sees it.

An image part is OpenAI's `{"type": "image_url", "image_url": {"url": ..., "detail"?: ...}}`. Its url
is a base64 `data:image/...;base64,` URL, a path on this machine (relative to the data file's
folder), or the id of a file uploaded to the service (`file-...`), which a `FileResolver` turns into
bytes. http(s) URLs are refused: hone reads no network. Every failure is a `RecordError` naming the
field, so `hone data check` reports it at file:line.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from hone.data.record_errors import RecordError

DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)", re.DOTALL)
FILE_ID = re.compile(r"file-[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ImageLimits:
    """What an image may be: at most `max_bytes` encoded, `max_pixels` decoded (a decompression-bomb
    guard), one of `formats` (Pillow's names; a GIF only with a single frame), and at most
    `max_images` images per example."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 36_000_000
    max_images: int = 10
    formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF")


class FileResolver(Protocol):
    """Uploaded files by id (the service's file store)."""

    def image_bytes(self, file_id: str) -> bytes:
        """The bytes of uploaded file `file_id`; KeyError when no such file exists."""
        ...


@dataclass(frozen=True)
class FolderFiles:
    """Uploaded files kept in one folder, each named by its id (with any extension): `file-abc.png`."""

    folder: str | Path

    def image_bytes(self, file_id: str) -> bytes:
        matches = sorted(Path(self.folder).glob(f"{file_id}.*")) + [Path(self.folder) / file_id]
        for path in matches:
            if path.is_file():
                return path.read_bytes()
        raise KeyError(file_id)


def load_image(url: str, *, field: str, base_dir: str | Path | None = None, files: FileResolver | None = None,
               limits: ImageLimits = ImageLimits()) -> Image.Image:
    """The image at `url` decoded and checked, as RGB; a RecordError at `field` says what is wrong."""
    data = image_bytes(url, field=field, base_dir=base_dir, files=files, limits=limits)
    return decode_image(data, field=field, limits=limits)


def image_bytes(url: str, *, field: str, base_dir: str | Path | None = None, files: FileResolver | None = None,
                limits: ImageLimits = ImageLimits()) -> bytes:
    """The encoded bytes `url` points to, within `limits.max_bytes`."""
    if not isinstance(url, str) or not url.strip():
        raise RecordError(field, "is empty; expected a data: URL, a file path or an uploaded file id")
    if url.startswith(("http://", "https://")):
        raise RecordError(field, f"is a web URL ({url[:60]}); hone reads no network: give the image as a "
                          "data:image/...;base64 URL, a local path or an uploaded file id")
    if url.startswith("data:"):
        data = data_url_bytes(url, field)
    elif FILE_ID.fullmatch(url):
        data = uploaded_bytes(url, field, files)
    else:
        data = path_bytes(url, field, base_dir, limits)
    if len(data) > limits.max_bytes:
        raise RecordError(field, f"is oversized: {len(data):,} bytes, over the limit of {limits.max_bytes:,}; "
                          "resize or recompress the image")
    return data


def data_url_bytes(url: str, field: str) -> bytes:
    match = DATA_URL.fullmatch(url)
    if not match:
        raise RecordError(field, "is a data: URL that is not base64 (expected data:image/png;base64,...)")
    mime = match["mime"] or ""
    if mime and not mime.startswith("image/"):
        raise RecordError(field, f"is a data: URL of {mime}; expected an image (image/png, image/jpeg, ...)")
    try:
        return base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise RecordError(field, f"is a data: URL whose base64 is corrupt or truncated ({error})") from None


def uploaded_bytes(file_id: str, field: str, files: FileResolver | None) -> bytes:
    if files is None:
        raise RecordError(field, f"is the uploaded file {file_id}, which can only be read by the service "
                          "(hone serve / jobs); here give a data: URL or a local path")
    try:
        return files.image_bytes(file_id)
    except KeyError:
        raise RecordError(field, f"is the uploaded file {file_id}, which does not exist; upload it first "
                          "(POST /v1/files)") from None


def path_bytes(url: str, field: str, base_dir: str | Path | None, limits: ImageLimits) -> bytes:
    path = Path(url[len("file://"):] if url.startswith("file://") else url).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise RecordError(field, f"is unreadable: no image file at {path}")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise RecordError(field, f"is oversized: {path} is {size:,} bytes, over the limit of {limits.max_bytes:,}; "
                          "resize or recompress the image")
    try:
        return path.read_bytes()
    except OSError as error:
        raise RecordError(field, f"is unreadable: {path}: {error.strerror}") from None


def decode_image(data: bytes, *, field: str, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode and verify encoded image bytes; check format, frames and pixel count; return RGB."""
    accepted = ", ".join(limits.formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            kind = image.format
            width, height = image.size
            if kind not in limits.formats:
                raise RecordError(field, f"is an unsupported format ({kind or 'unknown'}); accepted: {accepted}")
            if width * height > limits.max_pixels:
                raise RecordError(field, f"is oversized: {width}x{height} pixels, over the limit of "
                                  f"{limits.max_pixels:,}; resize the image")
            if getattr(image, "n_frames", 1) > 1:
                raise RecordError(field, f"is an animated {kind} ({image.n_frames} frames); give a still image")
            image.verify()  # checks the file's structure; the image must be reopened to be read
            image = Image.open(io.BytesIO(data))
            image.load()
    except RecordError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RecordError(field, f"is oversized: its pixel count is over the limit of {limits.max_pixels:,}") from None
    except Image.UnidentifiedImageError:
        raise RecordError(field, f"is not an image Pillow can read (corrupt, or an unsupported format); "
                          f"accepted: {accepted}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise RecordError(field, f"is a corrupt {kind or 'image'}: {error}") from None
    return image.convert("RGB")


def image_data_url(image: Image.Image, format: str = "PNG") -> str:
    """An image as a base64 `data:` URL (how tests, demos and clients embed pictures in records)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return bytes_data_url(buffer.getvalue(), f"image/{format.lower()}")


def bytes_data_url(data: bytes, mime: str | None = None) -> str:
    """Encoded image bytes as a base64 `data:` URL (of the type Pillow reads in their header when not given)."""
    if mime is None:
        try:
            mime = f"image/{(Image.open(io.BytesIO(data)).format or 'unknown').lower()}"
        except (OSError, ValueError):
            mime = "image/unknown"  # decoding reports what is wrong with it
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
