"""`hone service` as a real process: a dead worker is respawned, and SIGTERM or SIGINT ends the whole family."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.jobs.conftest import _free_port, wait_for


def _children(pid: int) -> set[int]:
    """The processes `pid` started (from any of its threads)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found |= {int(p) for p in f.read().split()}
    return found


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def start_service(tmp_path, tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HONE_HOME": str(tmp_path / "home")}
    data = tmp_path / "data"
    started = []

    def start(workers: int):
        new_key = [sys.executable, "-m", "hone", "service", "--data-dir", str(data), "--new-key", "alpha"]
        key = subprocess.run(new_key, capture_output=True, text=True, env=env, check=True).stdout.strip()
        port = _free_port()
        log = open(tmp_path / "service.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "hone", "service", "--data-dir", str(data), "--port", str(port),
                                 "--model", str(tiny_model_dir), "--workers", str(workers), "--job-threads", "1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"})

        def status():
            try:
                return client.get("/v1/service/status").json()["workers"]
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "service.log").read_text()
                return None

        wait_for(lambda: (status() or {}).get("alive") == workers, timeout=120, what="the service and its workers")
        return proc, status

    yield start
    for proc in started:
        for child in _children(proc.pid) if proc.poll() is None else ():
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_dead_worker_is_respawned_and_sigterm_stops_every_worker(start_service):
    service, status = start_service(2)
    workers = _children(service.pid)
    assert len(workers) == 2 and status() == {"configured": 2, "alive": 2, "respawned": 0}
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: status() == {"configured": 2, "alive": 2, "respawned": 1}, timeout=30, what="a respawned worker")
    now = _children(service.pid)
    assert victim not in now and len(now) == 2
    service.send_signal(signal.SIGTERM)
    assert service.wait(120) is not None
    time.sleep(0.5)
    assert [pid for pid in now if _running(pid)] == []  # no worker goes on polling as an orphan


def test_sigint_stops_every_worker(start_service):
    service, _ = start_service(1)
    workers = _children(service.pid)
    service.send_signal(signal.SIGINT)
    service.wait(120)
    time.sleep(0.5)
    assert workers and [pid for pid in workers if _running(pid)] == []
