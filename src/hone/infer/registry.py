"""Known adapters by name, and the LRU cache of those whose weights sit in the model.

Registering an adapter only records and checks its artifact (cheap); its weights load on first
use and stay until the cache, bounded by a count and by bytes, evicts the least recently used
one. Each name has its own lock, so registering, unregistering and loading one name never race
(loading two different names may overlap with registering a third).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hone.errors import HoneError, ModelError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class AdapterInfo:
    """A registered adapter: its artifact folder, the chat template it was trained with, its manifest."""

    name: str
    path: Path
    chat_template: str | None
    manifest: dict
    created: float = 0.0
    bytes: int = 0  # weights in memory while loaded
    uses: int = 0


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


@dataclass
class AdapterRegistry:
    """Names → artifacts, plus an LRU of loaded names; `load(info) -> bytes` and `unload(name)`
    put weights into and take them out of the model (the engine provides them)."""

    load: Callable[[AdapterInfo], int]
    unload: Callable[[str], None]
    max_loaded: int = 16
    max_bytes: int = 1 << 30
    on_event: Callable[[str, str], None] | None = None  # (event, name): hit | miss | evict
    adapters: dict[str, AdapterInfo] = field(default_factory=dict)
    loaded: OrderedDict = field(default_factory=OrderedDict)  # name -> bytes, least recent first
    stats: CacheStats = field(default_factory=CacheStats)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def register(self, info: AdapterInfo, *, replace: bool = False) -> AdapterInfo:
        check_name(info.name)
        with self.lock_for(info.name):
            if info.name in self.adapters and not replace:
                raise HoneError(f"an adapter named {info.name!r} is already registered", where="name",
                                hint="unregister it first, or pass replace=true")
            if info.name in self.loaded:
                self._evict(info.name, count=False)
            self.adapters[info.name] = info
        return info

    def unregister(self, name: str) -> None:
        with self.lock_for(name):
            if name not in self.adapters:
                raise unknown_model(name)
            if name in self.loaded:
                self._evict(name, count=False)
            del self.adapters[name]

    def get(self, name: str) -> AdapterInfo:
        info = self.adapters.get(name)
        if info is None:
            raise unknown_model(name)
        return info

    def ensure_loaded(self, names: set[str]) -> None:
        """Load every name not yet in memory, evicting least recently used adapters outside `names`."""
        if len(names) > self.max_loaded:
            raise HoneError(f"a batch needs {len(names)} adapters but at most {self.max_loaded} fit in the cache")
        for name in names:
            with self.lock_for(name):
                info = self.get(name)
                info.uses += 1
                if name in self.loaded:
                    self.loaded.move_to_end(name)
                    self._event("hit", name)
                    continue
                self._event("miss", name)
                self._make_room(keep=names, incoming=1)
                info.bytes = self.load(info)
                self.loaded[name] = info.bytes
                self._make_room(keep=names, incoming=0)

    def _make_room(self, keep: set[str], incoming: int) -> None:
        def over() -> bool:
            return (len(self.loaded) + incoming > self.max_loaded
                    or (sum(self.loaded.values()) > self.max_bytes and len(self.loaded) > 1))

        for victim in [n for n in self.loaded if n not in keep]:
            if not over():
                break
            self._evict(victim)

    def _evict(self, name: str, *, count: bool = True) -> None:
        self.unload(name)
        del self.loaded[name]
        if count:
            self._event("evict", name)

    def _event(self, event: str, name: str) -> None:
        if event == "hit":
            self.stats.hits += 1
        elif event == "miss":
            self.stats.misses += 1
        else:
            self.stats.evictions += 1
        if self.on_event is not None:
            self.on_event(event, name)


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise HoneError(f"adapter name {name!r} is not allowed", where="name",
                        hint="use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")


class UnknownModel(ModelError):
    """A request named a model that is neither the base nor a registered adapter."""


def unknown_model(name: str) -> UnknownModel:
    return UnknownModel(f"the model {name!r} does not exist", where="model",
                      hint="GET /v1/models lists the base model and the registered adapters")
