"""Read JSONL training files into Examples, turning every bad line into a line-numbered Issue."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hone.data.formats import Example, RecordError, parse_record
from hone.errors import DataError

UTF8_BOM = b"\xef\xbb\xbf"
STRICT_HINT = "fix the lines listed below, or read leniently (strict=False) to skip them"


@dataclass
class Issue:
    """One problem with one line of a data file; prints as `train.jsonl:17: messages[2].role: is 'bot'; ...`."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def read_examples(
    path: str | Path, *, strict: bool = True, max_bytes: int | None = None
) -> tuple[list[Example], list[Issue]]:
    """Parse every non-blank line of a JSONL file; return the valid Examples and the Issues found.

    strict=True raises one DataError listing every issue when any line is bad; strict=False returns
    the valid examples and the issues so the caller can report "skipped N". A missing, empty or
    oversized file, or one with no valid record at all, is a DataError either way.
    """
    examples: list[Example] = []
    issues: list[Issue] = []
    for _, result in iter_records(path, max_bytes=max_bytes):
        if isinstance(result, Issue):
            issues.append(result)
        else:
            examples.append(result)
    records = len(examples) + len(issues)
    if records == 0:
        raise DataError("the file has no records", where=str(path), hint="write one JSON object per line")
    if issues and (strict or not examples):
        raise DataError(
            f"{len(issues)} of {records} records are invalid",
            where=str(path),
            issues=issues,
            hint=STRICT_HINT if examples else "no record is usable; see the first issue below",
        )
    return examples, issues


def iter_records(path: str | Path, *, max_bytes: int | None = None) -> Iterator[tuple[int, Example | Issue]]:
    """Yield (line number, Example or Issue) for every non-blank line, reading bytes line by line.

    Raises DataError before reading when the file is missing, not a file, or bigger than max_bytes.
    """
    check_file_readable(path, max_bytes)
    name = str(path)
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if number == 1 and raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            yield number, parse_line(raw, name, number)


def check_file_readable(path: str | Path, max_bytes: int | None) -> None:
    """Raise a DataError saying why `path` cannot be read as a data file."""
    where = str(path)
    if not os.path.exists(path):
        raise DataError("file not found", where=where, hint="check the path (relative paths start at the current directory)")
    if not os.path.isfile(path):
        raise DataError("is not a file", where=where, hint="pass a .jsonl file, one JSON object per line")
    size = os.path.getsize(path)
    if max_bytes is not None and size > max_bytes:
        raise DataError(
            f"file is {size:,} bytes, over the limit of {max_bytes:,}",
            where=where,
            hint="split the file or raise the size limit",
        )


def parse_line(raw: bytes, path: str, line: int) -> Example | Issue:
    """Decode, parse and validate one line; every failure becomes an Issue at `path:line`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        return Issue(path, line, "", f"invalid UTF-8 byte 0x{byte:02x} at byte {error.start + 1} of the line; save the file as UTF-8")
    try:
        obj = json.loads(text)
        example = parse_record(obj)
    except json.JSONDecodeError as error:
        return Issue(path, line, "", f"invalid JSON: {error.msg} (column {error.colno})")
    except RecursionError:
        return Issue(path, line, "", "the JSON is nested too deeply to read; a record is an object of "
                     "messages, prompt/completion or similar fields, a few levels deep")
    except RecordError as error:
        return Issue(path, line, error.field, error.message)
    example.where = f"{path}:{line}"
    return example
