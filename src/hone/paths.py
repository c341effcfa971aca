"""Where hone keeps its caches; `HONE_HOME` moves them (default `~/.cache/hone`)."""

from __future__ import annotations

import os
from pathlib import Path


def hone_home() -> Path:
    return Path(os.environ.get("HONE_HOME") or Path.home() / ".cache" / "hone")


def private_dir(path: str | Path) -> Path:
    """`path` (and missing parents) created 0700, only for the user running hone; an existing one is made 0700."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def private_file(path: str | Path, mode: str = "wb"):
    """`path` opened for writing ('w', 'a', with 'b' for bytes); a new file is created 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return open(os.open(path, flags, 0o600), mode, **({} if "b" in mode else {"encoding": "utf-8"}))
