"""The store on a real SQLite file and a real PostgreSQL server: atomic claims across processes, leases,
the status machine."""

import multiprocessing
import time

import pytest

from hone.jobs.service import ServiceError, transition
from hone.jobs.store import Store


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
    with pytest.raises(ServiceError) as error:
        transition(store, job, "succeeded")
    assert error.value.status == 409 and "queued" in error.value.what
    paused = transition(store, job, "paused")
    assert store.claim_job("w", 5) is None  # paused jobs are not claimed
    queued = transition(store, paused, "queued")
    assert store.claim_job("w", 5)["id"] == queued["id"]
    cancelled = transition(store, store.get_job(None, job["id"]), "cancelled")
    assert cancelled["finished_at"] is not None
    with pytest.raises(ServiceError):
        transition(store, cancelled, "queued")
    with pytest.raises(ServiceError):  # a stale row (someone changed it meanwhile) is refused too
        transition(store, paused, "queued")


def test_api_keys_are_stored_hashed(tmp_path):
    store = Store(tmp_path / "jobs.db")
    project = store.create_project("p")["id"]
    key = store.create_key(project)
    assert store.project_for_key(key) == project
    assert store.project_for_key(key + "x") is None
    assert all(key.encode() not in f.read_bytes() for f in tmp_path.glob("jobs.db*"))
    assert any(f.stat().st_size for f in tmp_path.glob("jobs.db*"))
