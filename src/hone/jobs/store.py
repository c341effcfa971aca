"""The service's database: projects, API keys, files, fine-tuning jobs, their events and checkpoints.

SQLAlchemy Core, so the same statements run on a SQLite file (the default, nothing to start) and
on PostgreSQL (`postgresql://...`) shared by several machines. Every read and write that concerns a
user's object takes the project id, so one project can never see another's rows.

Claiming a job is a compare-and-set: `UPDATE jobs SET worker=... WHERE id=? AND <still claimable>`
succeeds for exactly one worker (rowcount 1), on SQLite (writes are serialised) and on PostgreSQL
(the second UPDATE re-checks the WHERE clause after the first commits). A running job carries a
lease that its worker renews; a job whose lease ran out (its worker died) is claimable again.
A claim may also require the job's project to run fewer than N other jobs: the count is part of the
UPDATE's WHERE clause, and on PostgreSQL the claim first locks the project's row, so two claims for
one project are serialised and the second one's count sees the first.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import sqlalchemy as sa

from hone.keys import hash_key, new_key

metadata = sa.MetaData()

projects = sa.Table(
    "projects", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.Integer, nullable=False),
)
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("revoked_at", sa.Integer),
)
files = sa.Table(
    "files", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("filename", sa.String(500), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Column("report", sa.JSON),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
)
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),  # creation order, for pagination
    sa.Column("model", sa.String(1000), nullable=False),
    sa.Column("training_file", sa.String(64), nullable=False),
    sa.Column("validation_file", sa.String(64)),
    sa.Column("suffix", sa.String(64)),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("method", sa.JSON, nullable=False),  # OpenAI's method with every "auto" resolved
    sa.Column("config", sa.JSON, nullable=False),  # the hone RunConfig the job trains
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("fine_tuned_model", sa.String(300)),
    sa.Column("adapter_dir", sa.String(1000)),
    sa.Column("error", sa.JSON),
    sa.Column("metadata", sa.JSON),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("started_at", sa.Integer),
    sa.Column("finished_at", sa.Integer),
    sa.Column("trained_tokens", sa.Integer),
    sa.Column("result_files", sa.JSON),  # file ids: the step-metrics CSV
    sa.Column("results", sa.JSON),  # the adapter's final metrics (train/valid loss, eval_* scores)
    sa.Column("progress", sa.JSON),  # {"step": n, "total_steps": m}
    sa.Column("run_dir", sa.String(1000), nullable=False),
    sa.Column("worker", sa.String(100)),  # the worker holding the job (null when none)
    sa.Column("lease_until", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
)
events = sa.Table(
    "job_events", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # message | metrics
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON),
)
checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.id"), nullable=False, index=True),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("metrics", sa.JSON),
    sa.Column("fine_tuned_model_checkpoint", sa.String(300), nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("job_id", "step"),
)
permissions = sa.Table(  # a checkpoint's model granted to another project (OpenAI's checkpoint permissions)
    "checkpoint_permissions", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("checkpoint", sa.String(300), nullable=False, index=True),  # the checkpoint's model name
    sa.Column("owner_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.UniqueConstraint("checkpoint", "project_id"),
)
deleted_models = sa.Table(  # fine-tuned and checkpoint models deleted through the API: no longer callable
    "deleted_models", metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("deleted_at", sa.Integer, nullable=False),
)

ACTIVE = ("validating_files", "queued", "running", "paused")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def _row(row) -> dict | None:
    return dict(row._mapping) if row is not None else None


class Store:
    """All SQL of the service. `url` is a SQLAlchemy URL or a path to a SQLite file."""

    def __init__(self, url: str | Path) -> None:
        url = str(url)
        if "://" not in url:
            path = Path(url).expanduser()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # SQLite's -wal and -shm files take its mode
            os.chmod(path, 0o600)
            url = f"sqlite:///{path}"
        self.url = url
        args = {"timeout": 30, "check_same_thread": False} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=args, future=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    # -- projects and keys ---------------------------------------------------------------------
    def create_project(self, name: str) -> dict:
        row = {"id": new_id("proj"), "name": name, "created_at": int(time.time())}
        with self.engine.begin() as db:
            db.execute(projects.insert().values(**row))
        return row

    def project_by_name(self, name: str) -> dict | None:
        with self.engine.connect() as db:
            return _row(db.execute(sa.select(projects).where(projects.c.name == name)).first())

    def create_key(self, project_id: str) -> str:
        """A new API key for the project; only its SHA-256 is stored, so show it to the user now."""
        key = new_key("sk-hone-")
        with self.engine.begin() as db:
            db.execute(api_keys.insert().values(id=new_id("key"), project_id=project_id, key_sha256=hash_key(key),
                                                hint=key[-4:], created_at=int(time.time())))
        return key

    def project_exists(self, project_id: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(sa.select(projects.c.id).where(projects.c.id == project_id)).first() is not None

    def project_for_key(self, key: str) -> str | None:
        with self.engine.connect() as db:
            return db.execute(sa.select(api_keys.c.project_id).where(
                api_keys.c.key_sha256 == hash_key(key), api_keys.c.revoked_at.is_(None))).scalar()

    # -- files ---------------------------------------------------------------------------------
    def add_file(self, project_id: str, row: dict) -> dict:
        with self.engine.begin() as db:
            seq = db.execute(sa.select(sa.func.coalesce(sa.func.max(files.c.seq), 0) + 1)).scalar()
            row = {**row, "project_id": project_id, "seq": seq}
            db.execute(files.insert().values(**row))
        return row

    def get_file(self, project_id: str, file_id: str) -> dict | None:
        with self.engine.connect() as db:
            return _row(db.execute(sa.select(files).where(files.c.id == file_id,
                                                          files.c.project_id == project_id)).first())

    def list_files(self, project_id: str, *, purpose: str | None = None, after: str | None = None,
                   limit: int = 100, newest_first: bool = True) -> list[dict]:
        query = sa.select(files).where(files.c.project_id == project_id)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        return self._page(query, files, files.c.project_id == project_id, after, limit, newest_first)

    def delete_file(self, project_id: str, file_id: str) -> bool:
        with self.engine.begin() as db:
            return db.execute(files.delete().where(files.c.id == file_id,
                                                   files.c.project_id == project_id)).rowcount == 1

    def file_in_use(self, project_id: str, file_id: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(sa.select(jobs.c.id).where(
                jobs.c.project_id == project_id, jobs.c.status.in_(ACTIVE),
                sa.or_(jobs.c.training_file == file_id, jobs.c.validation_file == file_id))).first() is not None

    # -- jobs ----------------------------------------------------------------------------------
    def add_job(self, project_id: str, row: dict) -> dict:
        with self.engine.begin() as db:
            seq = db.execute(sa.select(sa.func.coalesce(sa.func.max(jobs.c.seq), 0) + 1)).scalar()
            row = {**row, "project_id": project_id, "seq": seq, "attempts": 0}
            db.execute(jobs.insert().values(**row))
        return row

    def get_job(self, project_id: str | None, job_id: str) -> dict | None:
        """The job, within the project (None = any project: for workers only)."""
        query = sa.select(jobs).where(jobs.c.id == job_id)
        if project_id is not None:
            query = query.where(jobs.c.project_id == project_id)
        with self.engine.connect() as db:
            return _row(db.execute(query).first())

    def list_jobs(self, project_id: str, *, after: str | None = None, limit: int = 20,
                  metadata_filter: dict | None = None) -> list[dict]:
        query = sa.select(jobs).where(jobs.c.project_id == project_id)
        rows = self._page(query, jobs, jobs.c.project_id == project_id, after, None, True)
        if metadata_filter:
            rows = [r for r in rows if all((r["metadata"] or {}).get(k) == v for k, v in metadata_filter.items())]
        return rows[:limit]

    def count_active_jobs(self, project_id: str) -> int:
        with self.engine.connect() as db:
            return db.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.project_id == project_id, jobs.c.status.in_(ACTIVE))).scalar()

    def update_job(self, job_id: str, *, expect: dict | None = None, **values) -> bool:
        """Set `values` on the job if its columns still equal `expect`; True when the row changed."""
        query = jobs.update().where(jobs.c.id == job_id)
        for column, value in (expect or {}).items():
            col = jobs.c[column]
            query = query.where(col.is_(None) if value is None else
                                col.in_(value) if isinstance(value, tuple) else col == value)
        with self.engine.begin() as db:
            return db.execute(query.values(**values)).rowcount == 1

    def claim_job(self, worker: str, lease_seconds: float, max_running: int | None = None) -> dict | None:
        """Atomically take the oldest queued job, or a running one whose worker's lease ran out, of a
        project that runs fewer than `max_running` other jobs (None: no limit)."""
        now = time.time()
        claimable = sa.or_(
            sa.and_(jobs.c.status == "queued", sa.or_(jobs.c.worker.is_(None), jobs.c.lease_until < now)),
            sa.and_(jobs.c.status == "running", jobs.c.lease_until < now),
        )
        if max_running is not None:
            other = jobs.alias("other")
            running = sa.select(sa.func.count()).select_from(other).where(
                other.c.project_id == jobs.c.project_id, other.c.status == "running", other.c.id != jobs.c.id)
            claimable = sa.and_(claimable, running.scalar_subquery() < max_running)
        while True:  # each round that loses every candidate lost it to another claim: look again
            with self.engine.connect() as db:
                candidates = db.execute(sa.select(jobs.c.id, jobs.c.project_id, jobs.c.status, jobs.c.worker,
                                                  jobs.c.attempts).where(claimable).order_by(jobs.c.seq).limit(5)).all()
            if not candidates:
                return None
            for job_id, project_id, status, previous, attempts in candidates:
                cas = jobs.update().where(jobs.c.id == job_id, jobs.c.status == status, claimable,
                                          jobs.c.attempts == attempts)
                with self.engine.begin() as db:
                    if max_running is not None:  # one claim per project at a time (a no-op on SQLite)
                        db.execute(sa.select(projects.c.id).where(projects.c.id == project_id)
                                   .with_for_update(key_share=True))  # FOR NO KEY UPDATE
                    won = db.execute(cas.values(status="running", worker=worker, lease_until=now + lease_seconds,
                                                attempts=attempts + 1,
                                                started_at=sa.func.coalesce(jobs.c.started_at, int(now)))).rowcount
                if won == 1:
                    job = self.get_job(None, job_id)
                    job["previous_worker"] = previous if status == "running" else None
                    return job

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> str | None:
        """Extend this worker's lease; returns the job's status, or None when the job is no longer ours."""
        with self.engine.begin() as db:
            db.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker)
                       .values(lease_until=time.time() + lease_seconds))
            row = db.execute(sa.select(jobs.c.status, jobs.c.worker).where(jobs.c.id == job_id)).first()
        return row.status if row is not None and row.worker == worker else None

    def fine_tuned_models(self, project_id: str | None = None) -> list[dict]:
        """Succeeded jobs' models not deleted: name, base model, adapter directory, project (for the
        inference server)."""
        query = sa.select(jobs.c.fine_tuned_model, jobs.c.model, jobs.c.adapter_dir, jobs.c.project_id,
                          jobs.c.finished_at).where(jobs.c.status == "succeeded", _not_deleted(jobs.c.fine_tuned_model))
        if project_id is not None:
            query = query.where(jobs.c.project_id == project_id)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query.order_by(jobs.c.seq))]

    def checkpoint_models(self, project_id: str | None = None, *, granted: bool = False) -> list[dict]:
        """Checkpoints' models not deleted, in `fine_tuned_models`' shape (adapter_dir None when the run keeps
        no servable copy of that step): the project's own, or (`granted`) those other projects granted it."""
        query = sa.select(checkpoints.c.fine_tuned_model_checkpoint.label("fine_tuned_model"), jobs.c.model,
                          jobs.c.run_dir, checkpoints.c.step, jobs.c.project_id,
                          checkpoints.c.created_at.label("finished_at")).join(jobs, jobs.c.id == checkpoints.c.job_id)
        query = query.where(_not_deleted(checkpoints.c.fine_tuned_model_checkpoint))
        if granted:
            query = query.join(permissions, permissions.c.checkpoint == checkpoints.c.fine_tuned_model_checkpoint
                               ).where(permissions.c.project_id == project_id)
        elif project_id is not None:
            query = query.where(jobs.c.project_id == project_id)
        with self.engine.connect() as db:
            rows = [dict(r._mapping) for r in db.execute(query.order_by(jobs.c.seq, checkpoints.c.step))]
        for row in rows:
            folder = Path(row.pop("run_dir")) / "checkpoint_models" / f"step-{row.pop('step')}"
            row["adapter_dir"] = str(folder) if (folder / "hone.json").is_file() else None
        return rows

    def delete_model(self, project_id: str, name: str) -> None:
        with self.engine.begin() as db:
            db.execute(deleted_models.insert().values(name=name, project_id=project_id, deleted_at=int(time.time())))
            db.execute(permissions.delete().where(permissions.c.checkpoint == name))

    # -- checkpoint permissions ----------------------------------------------------------------
    def add_permission(self, owner_id: str, checkpoint: str, project_id: str) -> dict:
        """Grant `project_id` the checkpoint's model; the existing grant when there is one."""
        with self.engine.begin() as db:
            found = db.execute(sa.select(permissions).where(permissions.c.checkpoint == checkpoint,
                                                            permissions.c.project_id == project_id)).first()
            if found is not None:
                return dict(found._mapping)
            seq = db.execute(sa.select(sa.func.coalesce(sa.func.max(permissions.c.seq), 0) + 1)).scalar()
            row = {"id": new_id("cp"), "seq": seq, "checkpoint": checkpoint, "owner_id": owner_id,
                   "project_id": project_id, "created_at": int(time.time())}
            db.execute(permissions.insert().values(**row))
        return row

    def list_permissions(self, checkpoint: str, *, project_id: str | None = None, after: str | None = None,
                         limit: int = 10, newest_first: bool = True) -> list[dict]:
        query = sa.select(permissions).where(permissions.c.checkpoint == checkpoint)
        if project_id is not None:
            query = query.where(permissions.c.project_id == project_id)
        return self._page(query, permissions, permissions.c.checkpoint == checkpoint, after, limit, newest_first)

    def delete_permission(self, checkpoint: str, permission_id: str) -> bool:
        with self.engine.begin() as db:
            return db.execute(permissions.delete().where(permissions.c.id == permission_id,
                                                         permissions.c.checkpoint == checkpoint)).rowcount == 1

    # -- events and checkpoints ----------------------------------------------------------------
    def add_event(self, job_id: str, message: str, *, level: str = "info", type: str = "message",
                  data: dict | None = None) -> None:
        with self.engine.begin() as db:
            db.execute(events.insert().values(job_id=job_id, created_at=int(time.time()), level=level, type=type,
                                              message=message, data=data))

    def list_events(self, job_id: str, *, after_seq: int | None = None, before_seq: int | None = None,
                    limit: int = 20, newest_first: bool = True) -> list[dict]:
        query = sa.select(events).where(events.c.job_id == job_id)
        if after_seq is not None:
            query = query.where(events.c.seq > after_seq)
        if before_seq is not None:
            query = query.where(events.c.seq < before_seq)
        order = events.c.seq.desc() if newest_first else events.c.seq
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query.order_by(order).limit(limit))]

    def add_checkpoint(self, job_id: str, step: int, metrics: dict, name: str) -> bool:
        row = {"id": new_id("ftckpt"), "job_id": job_id, "step": step, "metrics": metrics,
               "fine_tuned_model_checkpoint": name, "created_at": int(time.time())}
        try:
            with self.engine.begin() as db:
                db.execute(checkpoints.insert().values(**row))
        except sa.exc.IntegrityError:
            return False  # recorded already (a resumed run passes the same step again)
        return True

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> list[dict]:
        with self.engine.connect() as db:
            rows = [dict(r._mapping) for r in db.execute(
                sa.select(checkpoints).where(checkpoints.c.job_id == job_id).order_by(checkpoints.c.step.desc()))]
        if after is not None:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1:] if after in ids else []
        return rows[:limit]

    def _page(self, query, table, scope, after, limit, newest_first) -> list[dict]:
        """`query`'s rows in `seq` order, those after the row `after` (looked up within `scope`, a condition)."""
        if after is not None:
            with self.engine.connect() as db:
                seq = db.execute(sa.select(table.c.seq).where(table.c.id == after, scope)).scalar()
            if seq is None:
                return []
            query = query.where(table.c.seq < seq if newest_first else table.c.seq > seq)
        query = query.order_by(table.c.seq.desc() if newest_first else table.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as db:
            return [dict(r._mapping) for r in db.execute(query)]


def _not_deleted(name_column):
    return name_column.not_in(sa.select(deleted_models.c.name))


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
