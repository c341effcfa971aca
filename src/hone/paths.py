"""Where hone keeps its caches; `HONE_HOME` moves them (default `~/.cache/hone`)."""

from __future__ import annotations

import os
from pathlib import Path


def hone_home() -> Path:
    return Path(os.environ.get("HONE_HOME") or Path.home() / ".cache" / "hone")
