"""`hone service`: hone's inference app (`hone.serve`) with the fine-tuning API (files, jobs), the
projects' keys, their fine-tuned models callable at once, and the dashboard; workers run beside it."""

import subprocess
import sys
from pathlib import Path

from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
UPLOAD_ENVELOPE = 64 * 1024  # room for the multipart wrapping around an upload at the size limit


def create_service_app(store: Store, settings: ServiceSettings, *, serve_settings=None, engine=None,
                       dashboard: bool = True):
    """The app: inference on `serve_settings.model` (or the loaded `engine`) for the base and each
    project's fine-tuned models, `/v1/files`, `/v1/fine_tuning/jobs`, and the dashboard at `/`."""
    from fastapi.staticfiles import StaticFiles

    from hone.jobs.serving import FineTunedCatalog, ProjectAuthenticator
    from hone.serve.app import create_app
    from hone.serve.routes import files, fine_tuning
    from hone.serve.settings import ServeSettings

    serve_settings = serve_settings or ServeSettings(feedback_file=str(settings.data_dir / "feedback.jsonl"))
    if engine is None:
        from hone.infer.engine import Engine

        engine = Engine.from_spec(serve_settings.model)
    app = create_app(serve_settings, engine=engine, auth=ProjectAuthenticator(store, engine.source.id),
                     catalog=FineTunedCatalog(store))
    app.title = "hone fine-tuning service"
    app.state.jobs_store = store
    app.state.jobs_settings = settings
    app.state.hone.body_limits["/v1/files"] = (settings.max_upload_bytes + UPLOAD_ENVELOPE, "file_too_large", "file")
    app.include_router(files.router, prefix="/v1")
    app.include_router(fine_tuning.router, prefix="/v1")
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
