"""A real service for the jobs tests: a SQLite file, uvicorn on 127.0.0.1, `hone worker` subprocesses."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hone.examples import pizza

LEASE = 4.0


@dataclass
class Service:
    url: str
    db: Path
    data_dir: Path
    store: object
    keys: dict  # project name -> API key
    workers: list = field(default_factory=list)
    settings: object = None  # the app's ServiceSettings (a test may change them, e.g. allow_python_graders)

    def client(self, project: str = "alpha") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[project]}"},
                            timeout=30)

    def openai(self, project: str = "alpha"):
        from openai import OpenAI

        return OpenAI(base_url=f"{self.url}/v1", api_key=self.keys[project], max_retries=0, timeout=30)

    def _log(self):
        """Each worker's output in DATA_DIR/worker-N.log, for a failing test to be read."""
        Path(self.data_dir).mkdir(parents=True, exist_ok=True)
        return open(Path(self.data_dir) / f"worker-{len(self.workers)}.log", "w")

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(Path(self.data_dir).glob("worker-*.log")))

    def start_worker(self, *extra: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "hone", "worker", "--db", str(self.db), "--data-dir",
                                 str(self.data_dir), "--lease", str(LEASE), "--job-threads", "1", "--poll", "0.2",
                                 *extra],
                                stdout=self._log(), stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        self.workers.append(proc)
        return proc


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster (Debian's postgresql, a Unix socket in a temp dir); skipped without it."""
    import shutil

    pytest.importorskip("psycopg")
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL is not installed")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="hone-pg-"))  # not under pytest's tmp dir: postgres must reach it
    data = root / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run([*as_postgres, "initdb", "-D", str(data), "-A", "trust", "-U", "hone"], check=True,
                   capture_output=True)
    subprocess.run([*as_postgres, "pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-k {root} -p {port} -c listen_addresses=''", "start"], check=True, capture_output=True)
    yield f"postgresql+psycopg://hone@/postgres?host={root}&port={port}"
    subprocess.run([*as_postgres, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh database: a SQLite file, then a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "jobs.db")
    import sqlalchemy as sa

    server = request.getfixturevalue("postgres_url")
    name = f"t{os.getpid()}_{int(time.time() * 1e6)}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.execute(sa.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="session")
def pizza_data(tmp_path_factory):
    return pizza.write_dataset(tmp_path_factory.mktemp("pizza"), train=40, heldout=8)


@pytest.fixture
def service(tmp_path, tiny_model_dir):
    """`hone service`'s one app on the tiny base: inference, files, jobs and dashboard."""
    with running_service(tmp_path, tiny_model_dir) as svc:
        yield svc


@contextmanager
def running_service(root: Path, tiny_model_dir: Path, **settings):
    """The service app on uvicorn at 127.0.0.1, its database and data under `root`, two projects (alpha,
    beta) with a key each; the workers a test started are killed when it leaves."""
    import torch
    import uvicorn

    from hone.infer.engine import Engine
    from hone.serve.service_app import create_service_app
    from hone.jobs.service import ServiceSettings
    from hone.jobs.store import Store
    from hone.serve.settings import ServeSettings

    db = root / "hone.db"
    store = Store(db)
    settings = ServiceSettings(**{"data_dir": root / "data", "lease_seconds": LEASE, "max_active_jobs": 3,
                                  "max_upload_bytes": 200_000, "job_overrides": {"train.threads": 1}, **settings})
    keys = {}
    for name in ("alpha", "beta"):
        keys[name] = store.create_key(store.create_project(name)["id"])
    port = _free_port()
    torch.set_num_threads(1)
    serve_settings = ServeSettings(model=str(tiny_model_dir), feedback_file=str(root / "feedback.jsonl"))
    app = create_service_app(store, settings, serve_settings=serve_settings,
                             engine=Engine.from_spec(str(tiny_model_dir)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    svc = Service(f"http://127.0.0.1:{port}", db, settings.data_dir, store, keys, settings=settings)
    try:
        yield svc
    finally:
        for proc in svc.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        server.should_exit = True
        thread.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload(client, path: Path, name: str | None = None):
    with open(path, "rb") as f:
        return client.post("/v1/files", files={"file": (name or path.name, f)}, data={"purpose": "fine-tune"})


def wait_for(predicate, timeout: float = 240, every: float = 0.3, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def job_request(model_dir, file_id, *, steps: int, save_every: int = 2, **extra) -> dict:
    """A supervised job on the tiny model, cut to `steps` optimizer steps (hone's `hone` overrides)."""
    return {"model": str(model_dir), "training_file": file_id,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2, "n_epochs": 1}}},
            "hone": {"train.max_steps": steps, "train.save_every": save_every, "train.lr": 5e-3,
                     "data.max_length": 384, **extra.pop("hone", {})}, **extra}


def metric_steps(data_dir: Path, job_id: str) -> list[int]:
    import json

    path = data_dir / "runs" / job_id / "metrics.jsonl"
    return [r["step"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r]


def running_job(run_dir: Path, job_id: str, save_every: int):
    """A store on a real SQLite file holding one running job whose run directory is `run_dir`: (store, job)."""
    from hone.jobs.store import Store

    store = Store(run_dir / "jobs.db")
    project = store.create_project("p")["id"]
    store.add_job(project, {"id": job_id, "model": "m", "training_file": "file-x", "seed": 0,
                            "method": {"type": "supervised"}, "config": {"train": {"save_every": save_every}},
                            "status": "running", "created_at": int(time.time()), "run_dir": str(run_dir)})
    return store, store.get_job(None, job_id)
