"""A JSON result cache keyed by what determines the result: model weights, adapter, data, settings.

Each entry is one file `<root>/eval-cache/<key>.json`, written atomically. The key hashes the
base model's weights hash, the adapter's files (not its hone.json, which gains metrics after
training), the data file's bytes and every setting that changes the answer, so a re-run with the
same inputs reads the file instead of generating again, and any change misses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_VERSION = 1


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def adapter_sha256(directory: str | Path) -> str:
    """A hash of an adapter folder's files, except hone.json (its metrics change after evaluation)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and path.name != "hone.json" and not path.name.endswith(".tmp"):
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def cache_key(**parts) -> str:
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "eval-cache"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value), encoding="utf-8")
        os.replace(tmp, self.root / f"{key}.json")
