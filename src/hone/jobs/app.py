"""`hone service`: the fine-tuning API (files, jobs), a minimal `/v1/models` and the dashboard in one
FastAPI app, with worker processes beside it. hone's inference server mounts the same routers."""

import subprocess
import sys
from pathlib import Path

from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


def create_service_app(store: Store, settings: ServiceSettings, *, dashboard: bool = True):
    """The app: `/v1/files`, `/v1/fine_tuning/jobs`, `/v1/models` (the project's tuned models), `/`."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.staticfiles import StaticFiles

    from hone.jobs.http import install_error_handlers, install_upload_limit, require_project
    from hone.serve.routes import files, fine_tuning

    app = FastAPI(title="hone fine-tuning service", docs_url=None, redoc_url=None)
    app.state.jobs_store = store
    app.state.jobs_settings = settings
    install_error_handlers(app)
    install_upload_limit(app)
    app.include_router(files.router, prefix="/v1")
    app.include_router(fine_tuning.router, prefix="/v1")

    @app.get("/v1/models")
    def list_models(request: Request, project: str = Depends(require_project)) -> dict:
        rows = request.app.state.jobs_store.fine_tuned_models(project)
        return {"object": "list", "data": [
            {"id": r["fine_tuned_model"], "object": "model", "created": r["finished_at"], "owned_by": project,
             "parent": r["model"]} for r in rows]}

    if dashboard and (DASHBOARD / "index.html").is_file():
        app.mount("/", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app


def start_workers(count: int, db: str, data_dir: Path, extra: list[str] | None = None) -> list[subprocess.Popen]:
    """`count` `hone worker` processes on the same store and data dir."""
    command = [sys.executable, "-m", "hone", "worker", "--db", db, "--data-dir", str(data_dir), *(extra or [])]
    return [subprocess.Popen(command) for _ in range(count)]


def stop_workers(workers: list[subprocess.Popen], grace: float = 90.0) -> None:
    """Ask each worker to stop (its job checkpoints and goes back to the queue), then wait."""
    for proc in workers:
        proc.terminate()
    for proc in workers:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
