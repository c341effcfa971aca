"""API keys: stored only as SHA-256 hashes, each scoped to models (or all) and optionally admin.

Keys are 256-bit random strings, so a plain SHA-256 (not a slow password hash) is enough: there is
nothing to brute-force. The key file (`HONE_HOME/keys.json` by default, mode 0600) is re-read when
it changes, so `hone keys create/revoke` take effect on a running server.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from hone.errors import HoneError
from hone.keys import hash_key, new_key
from hone.serve.errors import ApiError

PREFIX = "hone-"


class RequestKey(Protocol):
    """The key a request was made with, as the routes see it."""

    id: str

    @property
    def project(self) -> str | None:
        """The project the key belongs to (`hone service`); None for keys that no project owns."""

    def allows(self, model: str) -> bool:
        """Whether the key may use `model`."""


class KeyChecker(Protocol):
    """What checks a request's `Authorization` header: `Authenticator` here, the service's project keys."""

    def check(self, authorization: str | None, *, model: str | None = None,
              admin: bool = False) -> RequestKey | None:
        """The key, None on a server without keys, or an error (401 no/unknown key, 403 not allowed)."""


@dataclass
class ApiKey:
    id: str
    name: str
    sha256: str
    models: list[str] = field(default_factory=lambda: ["*"])
    admin: bool = False
    created: str = ""
    revoked: bool = False

    @property
    def project(self) -> None:
        """The key's project: none for `hone serve`'s keys, which the models they may use scope instead."""
        return None

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


def bearer_token(authorization: str | None, hint: str = "") -> str:
    """The key in `Authorization: Bearer KEY`; 401 when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'" + (f" ({hint})" if hint else ""),
                       code="invalid_api_key", type="authentication_error")
    return token.strip()


class KeyFile:
    """The key file: create, list and revoke keys (the plain key is shown once, at creation)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise HoneError(f"key file is not valid JSON: {exc}", where=str(self.path)) from None
        return [ApiKey(**k) for k in data.get("keys", [])]

    def create(self, name: str, models: list[str] | None = None, admin: bool = False) -> tuple[ApiKey, str]:
        plain = new_key(PREFIX)
        key = ApiKey(id="key-" + secrets.token_hex(4), name=name, sha256=hash_key(plain),
                     models=list(models or ["*"]), admin=admin,
                     created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._write([*self.read(), key])
        return key, plain

    def revoke(self, id_or_name: str) -> ApiKey:
        keys = self.read()
        matches = [k for k in keys if id_or_name in (k.id, k.name) and not k.revoked]
        if len(matches) != 1:
            raise HoneError(f"{'no' if not matches else 'more than one'} active key is named {id_or_name!r}",
                            where=str(self.path), hint="`hone keys list` shows ids; revoke by id")
        matches[0].revoked = True
        self._write(keys)
        return matches[0]

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [asdict(k) for k in keys]}, f, indent=2)
        os.replace(tmp, self.path)


class Authenticator:
    """Checks `Authorization: Bearer KEY` against the key file and the keys given at start."""

    def __init__(self, key_file: KeyFile, plain_keys: list[str] = ()) -> None:
        self.key_file = key_file
        self.static = [ApiKey(id=f"cli-{i}", name="--api-key", sha256=hash_key(k), admin=True)
                       for i, k in enumerate(plain_keys)]
        self._keys: list[ApiKey] = []
        self._stamp = None
        self._lock = threading.Lock()

    def keys(self) -> list[ApiKey]:
        with self._lock:
            try:
                stat = self.key_file.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self._keys, self._stamp = (self.key_file.read() if stamp else []), stamp
            return self.static + [k for k in self._keys if not k.revoked]

    def check(self, authorization: str | None, *, model: str | None = None, admin: bool = False) -> ApiKey | None:
        """The key making the request, or an ApiError (401 no/unknown key, 403 not allowed)."""
        keys = self.keys()
        if not keys:
            if admin:
                raise ApiError(403, "admin endpoints need an admin API key and this server has none",
                               code="admin_disabled", type="permission_error")
            return None  # an open server (no keys configured)
        digest = hash_key(bearer_token(authorization))
        key = next((k for k in keys if hmac.compare_digest(k.sha256, digest)), None)
        if key is None:
            raise ApiError(401, "invalid API key", code="invalid_api_key", type="authentication_error")
        if admin and not key.admin:
            raise ApiError(403, f"key {key.id} is not an admin key", code="not_admin", type="permission_error")
        if model is not None and not key.allows(model):
            raise ApiError(403, f"key {key.id} may not use model {model!r}", param="model",
                           code="model_not_permitted", type="permission_error")
        return key
