"""`hone service`: hone's inference app (`create_app`) with the fine-tuning API (files, jobs), the
projects' keys, their fine-tuned models callable at once, and the dashboard; workers run beside it."""

from pathlib import Path

from fastapi.staticfiles import StaticFiles

from hone.infer.engine import Engine
from hone.jobs.images import ProjectImages
from hone.jobs.service import ServiceSettings
from hone.jobs.store import Store
from hone.paths import private_dir
from hone.serve.app import create_app
from hone.serve.projects import FineTunedCatalog, ProjectAuthenticator
from hone.serve.routes import files, fine_tuning, model_access, service_status
from hone.serve.settings import ServeSettings

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
UPLOAD_ENVELOPE = 64 * 1024  # room for the multipart wrapping around an upload at the size limit


def create_service_app(store: Store, settings: ServiceSettings, *, serve_settings=None, engine=None,
                       dashboard: bool = True, workers=None):
    """The app: inference on `serve_settings.model` (or the loaded `engine`) for the base and each
    project's fine-tuned models, `/v1/files`, `/v1/fine_tuning/jobs`, and the dashboard at `/`.
    `workers` (a `WorkerFamily`) is watched by the app: a dead worker is respawned, and
    `/v1/service/status` shows how many run."""
    private_dir(settings.data_dir)
    serve_settings = serve_settings or ServeSettings(feedback_file=str(settings.data_dir / "feedback.jsonl"))
    if engine is None:
        engine = Engine.from_spec(serve_settings.model)
    app = create_app(serve_settings, engine=engine, auth=ProjectAuthenticator(store, engine.source.id),
                     catalog=FineTunedCatalog(store))
    app.title = "hone fine-tuning service"
    app.state.jobs_store = store
    app.state.jobs_settings = settings
    app.state.hone.uploaded_images = lambda project: ProjectImages(store, project)
    app.state.workers = workers
    if workers is not None:  # stopped by the app's shutdown, which SIGTERM and SIGINT both reach
        app.state.hone.on_start.append(workers.start)
        app.state.hone.on_stop.append(workers.stop)
    app.state.hone.body_limits["/v1/files"] = (settings.max_upload_bytes + UPLOAD_ENVELOPE, "file_too_large", "file")
    app.include_router(files.router, prefix="/v1")
    app.include_router(fine_tuning.router, prefix="/v1")
    app.include_router(model_access.router, prefix="/v1")
    app.include_router(service_status.router, prefix="/v1")
    if dashboard and (DASHBOARD / "index.html").is_file():
        app.mount("/", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")
    return app
