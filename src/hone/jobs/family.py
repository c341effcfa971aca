"""The worker processes `hone service` runs beside its API: started, watched, respawned, stopped.

Each worker gets SIGTERM when the service's process dies, however it dies (Linux parent-death
signal), so no worker goes on polling as an orphan; SIGTERM makes a worker checkpoint its job and
put it back in the queue.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from hone.jobs.worker import die_with_parent


class WorkerFamily:
    """`count` `hone worker` processes on one store and data dir. While started, a thread respawns any
    that died every `every` seconds; `stop()` asks each to stop and waits for it."""

    def __init__(self, count: int, db: str, data_dir: Path, extra: list[str] | None = None, *,
                 every: float = 1.0) -> None:
        self.command = [sys.executable, "-m", "hone", "worker", "--db", db, "--data-dir", str(data_dir),
                        *(extra or [])]
        self.count, self.every = count, every
        self.procs: list[subprocess.Popen] = []
        self.respawned = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self.procs = [self._spawn() for _ in range(self.count)]
        self._watcher = threading.Thread(target=self._watch, name="hone-workers", daemon=True)
        self._watcher.start()

    def alive(self) -> int:
        return sum(proc.poll() is None for proc in self.procs)

    def respawn_dead(self) -> int:
        """Start a new worker in place of each that exited; how many were."""
        with self._lock:
            if self._stopping.is_set():
                return 0
            dead = [i for i, proc in enumerate(self.procs) if proc.poll() is not None]
            for i in dead:
                self.procs[i] = self._spawn()
            self.respawned += len(dead)
        return len(dead)

    def stop(self, grace: float = 90.0) -> None:
        """SIGTERM each worker (its job checkpoints and goes back to the queue), then wait; SIGKILL after `grace`."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs:
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _watch(self) -> None:
        while not self._stopping.wait(self.every):
            self.respawn_dead()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, preexec_fn=die_with_parent(signal.SIGTERM))
