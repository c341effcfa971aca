"""The store on a real SQLite file and a real PostgreSQL server: atomic claims across processes, leases,
the status machine."""

import multiprocessing
import time

import pytest

from hone.errors import ConflictError
from hone.jobs.service import transition
from hone.jobs.store import Store
from hone.serve.errors import from_exception
from tests.jobs.conftest import running_job


def _job(store, project, n):
    return store.add_job(project, {"id": f"ftjob-{n:04d}", "model": "m", "training_file": "file-x", "seed": 0,
                                   "method": {"type": "supervised"}, "config": {}, "status": "queued",
                                   "created_at": int(time.time()), "run_dir": f"/tmp/run-{n}"})


def _claim_all(db, name, queue):
    store = Store(db)
    claimed = []
    while (job := store.claim_job(name, lease_seconds=600)) is not None:
        claimed.append(job["id"])
    queue.put(claimed)


def test_concurrent_claims_take_each_job_exactly_once(db_url):
    db = db_url
    store = Store(db)
    project = store.create_project("p")["id"]
    ids = {_job(store, project, n)["id"] for n in range(40)}
    queue = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_claim_all, args=(str(db), f"w{i}", queue))
             for i in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    claimed = [job for result in results for job in result]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    workers = {row["worker"] for row in (store.get_job(None, i) for i in ids)}
    assert workers <= {f"w{i}" for i in range(4)}


def _claim_one(db, name, max_running, queue):
    job = Store(db).claim_job(name, lease_seconds=600, max_running=max_running)
    queue.put(job and job["id"])


def test_claims_respect_the_running_limit_of_each_project(db_url):
    """Many workers claim at once: one project's jobs beyond its running limit stay queued, and
    another project's job is claimed instead."""
    store = Store(db_url)
    alpha, beta = (store.create_project(name)["id"] for name in ("alpha", "beta"))
    alpha_ids = {_job(store, alpha, n)["id"] for n in range(6)}
    beta_ids = {_job(store, beta, n)["id"] for n in range(6, 8)}
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    procs = [spawn.Process(target=_claim_one, args=(str(db_url), f"w{i}", 2, queue)) for i in range(6)]
    for p in procs:
        p.start()
    claimed = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    taken = [i for i in claimed if i is not None]
    assert len(set(taken) & alpha_ids) == 2 and set(taken) & beta_ids == beta_ids and len(taken) == 4
    assert claimed.count(None) == 2  # nothing left that the limit allows
    assert store.claim_job("w", 600, max_running=2) is None
    first_beta = store.get_job(None, sorted(beta_ids)[0])
    transition(store, first_beta, "succeeded")  # beta makes room; alpha does not
    assert store.claim_job("w", 600, max_running=2) is None  # beta has no queued job left, alpha is full
    running_alpha = next(store.get_job(None, i) for i in sorted(set(taken) & alpha_ids))
    transition(store, running_alpha, "cancelled")
    assert store.claim_job("w", 600, max_running=2)["id"] in alpha_ids - set(taken)
    assert store.claim_job("w", 600)["project_id"] == alpha  # no limit: the rest of alpha's queue


def test_expired_lease_is_claimed_again_and_the_old_worker_loses_it(db_url):
    store = Store(db_url)
    project = store.create_project("p")["id"]
    _job(store, project, 1)
    first = store.claim_job("w1", lease_seconds=0.2)
    assert first["id"] == "ftjob-0001" and first["attempts"] == 1
    assert store.claim_job("w2", lease_seconds=5) is None  # lease still held
    time.sleep(0.3)
    second = store.claim_job("w2", lease_seconds=5)
    assert second["id"] == "ftjob-0001" and second["previous_worker"] == "w1" and second["attempts"] == 2
    assert store.renew_lease("ftjob-0001", "w1", 5) is None  # w1 learns the job is gone
    assert store.renew_lease("ftjob-0001", "w2", 5) == "running"


def test_status_machine_refuses_illegal_transitions(db_url):
    store = Store(db_url)
    project = store.create_project("p")["id"]
    job = _job(store, project, 1)
    with pytest.raises(ConflictError) as error:
        transition(store, job, "succeeded")
    assert from_exception(error.value).status == 409 and "queued" in error.value.what
    paused = transition(store, job, "paused")
    assert store.claim_job("w", 5) is None  # paused jobs are not claimed
    queued = transition(store, paused, "queued")
    assert store.claim_job("w", 5)["id"] == queued["id"]
    cancelled = transition(store, store.get_job(None, job["id"]), "cancelled")
    assert cancelled["finished_at"] is not None
    with pytest.raises(ConflictError):
        transition(store, cancelled, "queued")
    with pytest.raises(ConflictError):  # a stale row (someone changed it meanwhile) is refused too
        transition(store, paused, "queued")


def test_api_keys_are_stored_hashed(tmp_path):
    store = Store(tmp_path / "jobs.db")
    project = store.create_project("p")["id"]
    key = store.create_key(project)
    assert store.project_for_key(key) == project
    assert store.project_for_key(key + "x") is None
    assert all(key.encode() not in f.read_bytes() for f in tmp_path.glob("jobs.db*"))
    assert any(f.stat().st_size for f in tmp_path.glob("jobs.db*"))


def test_checkpoints_pruned_before_the_worker_looked_are_still_recorded(tmp_path):
    """`hone train` keeps 2 checkpoints: a fast run prunes step 2 before the worker sees it on disk.
    The worker records it anyway (the run went past it, so it was saved), with its metrics."""
    import json

    from hone.jobs.worker import Progress

    store, job = running_job(tmp_path, "ftjob-fast", save_every=2)
    lines = [{"step": s, "total_steps": 7, "loss": 1.0 / s, "tokens": 10} for s in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for step in (4,):  # 2 was pruned already; 4 is still there
        (tmp_path / "checkpoints" / f"step-{step}").mkdir(parents=True)
        (tmp_path / "checkpoints" / f"step-{step}" / "state.json").write_text("{}")
    Progress(store, job, tmp_path).update()
    rows = store.list_checkpoints(job["id"], limit=10)
    assert [(r["step"], r["metrics"]["train_loss"]) for r in rows] == [(4, 0.25), (2, 0.5)]
    with open(tmp_path / "metrics.jsonl", "a") as f:  # step 6 trained; its save is not past yet
        f.write(json.dumps({"step": 6, "total_steps": 7, "loss": 0.1, "tokens": 10}) + "\n")
    progress = Progress(store, store.get_job(None, job["id"]), tmp_path)
    progress.update()
    assert [r["step"] for r in store.list_checkpoints(job["id"], limit=10)] == [4, 2]
