"""Engines for several base models: the one served, plus others loaded on demand and kept in an LRU.

Each engine holds a whole base model in memory (SmolLM2-135M: about 0.5 GB in fp32), so the pool
is bounded by `max_bases`, counting the served base, which is never evicted. Room is made before a
new base loads, so no more than `max_bases` bases are ever in memory at once. An evicted engine
finishes the requests already queued on it, then stops.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable


class EnginePool:
    """Base model spec -> a started Engine. `create(spec)` loads one (`Engine.from_spec` and the server's
    settings); `primary` is the engine of the served base."""

    def __init__(self, primary, create: Callable[[str], object], max_bases: int = 2) -> None:
        self.primary, self.create, self.max_bases = primary, create, max_bases
        self.others: OrderedDict = OrderedDict()  # spec -> engine, least recently used first
        self._lock = threading.Lock()

    def get(self, spec: str):
        """The engine of base `spec`, loading it (and evicting the least recently used other) if needed;
        with `max_bases` 1 the caller refuses other bases before asking."""
        if spec == self.primary.source.id:
            return self.primary
        with self._lock:
            if spec in self.others:
                self.others.move_to_end(spec)
                return self.others[spec]
            while self.others and len(self.others) + 1 >= self.max_bases:
                _, evicted = self.others.popitem(last=False)
                evicted.stop()
            engine = self.create(spec)
            engine.start()
            self.others[spec] = engine
            return engine

    def engines(self) -> list:
        with self._lock:
            return [self.primary, *self.others.values()]

    def stop(self) -> None:
        with self._lock:
            for engine in self.others.values():
                engine.stop()
            self.others.clear()
