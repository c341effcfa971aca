"""Workers as real processes: cancel, pause and resume, kill -9 and recovery, two workers and several jobs."""

import os
import signal
import time
from pathlib import Path

from tests.jobs.conftest import job_request, metric_steps, running_job, upload, wait_for


def _create(service, model_dir, steps, save_every, project="alpha", **extra):
    client = service.client(project)
    file_id = upload(client, Path(service.pizza)).json()["id"]
    response = client.post("/v1/fine_tuning/jobs", json=job_request(model_dir, file_id, steps=steps,
                                                                     save_every=save_every, **extra))
    assert response.status_code == 200, response.text
    return response.json()["id"]


def _job(service, job_id):
    return service.store.get_job(None, job_id)


def _step(service, job_id):
    return (_job(service, job_id)["progress"] or {}).get("step", 0)


def _messages(service, job_id):
    return [e["message"] for e in service.store.list_events(job_id, limit=10**6, newest_first=False)]


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_cancel_stops_the_training_process(service, pizza_data, tiny_model_dir):
    service.pizza = pizza_data[0]
    job_id = _create(service, tiny_model_dir, steps=100_000, save_every=100_000)
    service.start_worker()
    wait_for(lambda: _step(service, job_id) >= 2, what="training to start")
    cancelled = service.client().post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["finished_at"]
    wait_for(lambda: _job(service, job_id)["worker"] is None, timeout=60, what="the worker to let go")
    metrics = service.data_dir / "runs" / job_id / "metrics.jsonl"
    size = metrics.stat().st_size
    time.sleep(2)
    assert metrics.stat().st_size == size  # nothing trains any more
    assert _job(service, job_id)["status"] == "cancelled" and _step(service, job_id) < 100_000


def test_pause_then_resume_continues_from_the_checkpoint(service, pizza_data, tiny_model_dir):
    service.pizza = pizza_data[0]
    job_id = _create(service, tiny_model_dir, steps=120, save_every=100_000)
    service.start_worker()
    client = service.client()
    wait_for(lambda: _step(service, job_id) >= 2, what="training to start")
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/pause").json()["status"] == "paused"
    paused = wait_for(lambda: [m for m in _messages(service, job_id) if m.startswith("Paused at step")],
                      timeout=60, what="the pause to take effect")
    at = int(paused[0].split()[3].rstrip(";"))
    assert 2 <= at < 120
    wait_for(lambda: _job(service, job_id)["worker"] is None, timeout=30, what="the worker to let go")
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/resume").json()["status"] == "queued"
    wait_for(lambda: _job(service, job_id)["status"] == "succeeded", what="the resumed job to succeed")
    assert f"Resuming from step {at}" in _messages(service, job_id)
    assert metric_steps(service.data_dir, job_id) == list(range(1, 121))  # each step once, none lost


def test_a_killed_worker_leaves_the_job_to_the_next_one(service, pizza_data, tiny_model_dir):
    service.pizza = pizza_data[0]
    job_id = _create(service, tiny_model_dir, steps=80, save_every=5)
    first = service.start_worker()
    wait_for(lambda: service.store.list_checkpoints(job_id) and _step(service, job_id) >= 7,
             what="a checkpoint")
    trainers = _children(first.pid)
    assert len(trainers) == 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: not _alive(trainers[0]), timeout=10, what="the trainer to die with its worker")
    saved = max(c["step"] for c in service.store.list_checkpoints(job_id, limit=100))
    assert _job(service, job_id)["status"] == "running"  # nobody knows yet; the lease runs out
    service.start_worker()
    try:
        wait_for(lambda: _job(service, job_id)["status"] == "succeeded", what="the job to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; job {_job(service, job_id)}\n{service.worker_logs()}") from None
    messages = _messages(service, job_id)
    taken = [m for m in messages if "stopped renewing its lease" in m]
    assert len(taken) == 1 and int(taken[0].split()[-1]) >= saved
    assert _job(service, job_id)["attempts"] == 2
    assert metric_steps(service.data_dir, job_id) == list(range(1, 81))


def test_two_workers_share_jobs_and_never_run_one_twice(service, pizza_data, tiny_model_dir):
    service.pizza = pizza_data[0]
    jobs = [_create(service, tiny_model_dir, steps=4, save_every=2) for _ in range(3)]
    service.start_worker()
    service.start_worker()
    wait_for(lambda: all(_job(service, j)["status"] == "succeeded" for j in jobs), what="all jobs to succeed")
    for job_id in jobs:
        assert _messages(service, job_id).count("Fine-tuning job started") == 1
        assert _job(service, job_id)["attempts"] == 1
        assert metric_steps(service.data_dir, job_id) == [1, 2, 3, 4]
    models = {_job(service, j)["fine_tuned_model"] for j in jobs}
    assert len(models) == 3


def test_a_project_at_its_running_limit_waits_while_another_project_runs(service, pizza_data, tiny_model_dir):
    """Two workers, a limit of one running job per project: alpha's second job stays queued while
    beta's job takes the free worker, and runs only once alpha's first has ended."""
    service.pizza = pizza_data[0]
    first, second = (_create(service, tiny_model_dir, steps=12, save_every=100) for _ in range(2))
    other = _create(service, tiny_model_dir, steps=12, save_every=100, project="beta")
    for _ in range(2):
        service.start_worker("--max-running-jobs", "1")
    status = {}
    wait_for(lambda: status.update({j: _job(service, j)["status"] for j in (first, second, other)}) or
             status == {first: "running", second: "queued", other: "running"}, what="alpha's first and beta's job")
    wait_for(lambda: all(_job(service, j)["status"] == "succeeded" for j in (first, second, other)),
             what="all jobs to succeed")
    jobs = {j: _job(service, j) for j in (first, second, other)}
    assert jobs[second]["started_at"] >= jobs[first]["finished_at"]  # never two of alpha's at once
    assert jobs[other]["started_at"] <= jobs[first]["finished_at"]
    assert {row["worker"] for row in jobs.values()} == {None}


def test_a_stopped_worker_checkpoints_and_requeues_its_job(service, pizza_data, tiny_model_dir):
    service.pizza = pizza_data[0]
    job_id = _create(service, tiny_model_dir, steps=100_000, save_every=100_000)
    worker = service.start_worker()
    wait_for(lambda: _step(service, job_id) >= 2, what="training to start")
    worker.send_signal(signal.SIGTERM)  # what `hone service` does to its workers on shutdown
    assert worker.wait(90) == 0
    job = _job(service, job_id)
    assert job["status"] == "queued" and job["worker"] is None
    stopped = [m for m in _messages(service, job_id) if "the job waits for the next worker" in m]
    at = int(stopped[0].split(" at step ")[1].split(";")[0])
    assert at >= 2 and (service.data_dir / "runs" / job_id / "checkpoints" / f"step-{at}").is_dir()


def _step_record(step, seconds):
    return {"step": step, "total_steps": 12, "loss": 2.0 - step / 10, "tokens": 100, "seconds": seconds}


def test_progress_follows_a_resumed_run_that_rewrote_its_metrics(tmp_path):
    """A resumed `hone train` cuts metrics.jsonl back to its checkpoint and trains on; when the file has grown
    past the worker's last look before that look, the worker must notice the rewrite, not read mid-line."""
    from hone.jobs.worker import Progress
    from hone.train.metrics import MetricsLog

    store, job = running_job(tmp_path, "ftjob-1", save_every=5)
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 10):  # the killed run: a checkpoint at 5, steps up to 9
        log.append(_step_record(step, 0.5))
    progress = Progress(store, job, tmp_path)
    progress.update()
    assert store.get_job(None, job["id"])["progress"]["step"] == 9
    log.truncate_after(5)  # the next run resumes from step 5 and trains on, between two looks
    for step in range(6, 12):
        log.append(_step_record(step, 0.123456789))
    progress.update()
    assert store.get_job(None, job["id"])["progress"]["step"] == 11
    assert progress.records[11]["seconds"] == 0.123456789 and progress.records[7]["seconds"] == 0.123456789


def test_estimated_finish_follows_the_wall_clock_rate_of_the_last_steps(tmp_path):
    """Steps 3 s apart (evaluations included), a 1000 s pause between steps 4 and 5 (left out by the median):
    at step 6 of 12 the finish is 6 steps of 3 s after step 6's time."""
    from hone.jobs.worker import Progress
    from hone.train.metrics import MetricsLog

    store, job = running_job(tmp_path, "ftjob-1", save_every=5)
    log = MetricsLog(tmp_path / "metrics.jsonl")
    times = {1: 100.0, 2: 103.0, 3: 106.0, 4: 109.0, 5: 1109.0, 6: 1112.0}
    progress = Progress(store, job, tmp_path)
    log.append({**_step_record(1, 0.5), "time": times[1]})
    progress.update()
    assert store.get_job(None, job["id"])["progress"]["estimated_finish"] is None  # one step: no rate yet
    for step in range(2, 7):
        log.append({**_step_record(step, 0.5), "time": times[step]})
    progress.update()
    assert store.get_job(None, job["id"])["progress"]["estimated_finish"] == int(1112.0 + 6 * 3.0)


def test_a_worker_that_cannot_follow_its_job_fails_it_and_lives_on(service, pizza_data, tiny_model_dir):
    """An error in the worker itself (here: a metrics line it cannot parse) fails that job with the error
    named, stops its trainer, and leaves the worker alive to run the next job."""
    service.pizza = pizza_data[0]
    broken = _create(service, tiny_model_dir, steps=100_000, save_every=100_000)
    run_dir = service.data_dir / "runs" / broken
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("{not json\n")
    worker = service.start_worker()
    wait_for(lambda: _job(service, broken)["status"] == "failed", timeout=120, what="the job to fail")
    failed = _job(service, broken)
    assert failed["error"]["code"] == "worker_error" and "JSONDecodeError" in failed["error"]["message"]
    assert failed["worker"] is None
    ok = _create(service, tiny_model_dir, steps=2, save_every=2)
    wait_for(lambda: _job(service, ok)["status"] == "succeeded", timeout=180, what="the next job to succeed")
    assert _alive(worker.pid) and not [c for c in _children(worker.pid) if _alive(c)]
