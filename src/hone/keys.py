"""API keys as hone stores them: random 256-bit strings kept only as their SHA-256.

Keys are random, so a plain SHA-256 (not a slow password hash) is enough: there is nothing to
brute-force. The server's key file (`hone.serve.auth`) and the service's store (`hone.jobs.store`)
both keep keys this way.
"""

from __future__ import annotations

import hashlib
import secrets


def hash_key(plain: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(plain.encode()).hexdigest()


def new_key(prefix: str) -> str:
    """A new plain key: `prefix` and 32 random bytes, URL-safe."""
    return prefix + secrets.token_urlsafe(32)
