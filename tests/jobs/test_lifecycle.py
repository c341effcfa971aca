"""A tiny-model job end to end through the official `openai` client, a real server and a `hone worker`."""

import json

import httpx

from tests.jobs.conftest import metric_steps, wait_for


def test_openai_client_runs_a_job_end_to_end(service, pizza_data, tiny_model_dir):
    client = service.openai()
    uploaded = client.files.create(file=open(pizza_data[0], "rb"), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.bytes == pizza_data[0].stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "train.jsonl"
    assert [f.id for f in client.files.list()] == [uploaded.id]
    assert client.files.list().data[0].report["valid"] == 40  # hone's check, done at upload
    assert client.files.content(uploaded.id).content == pizza_data[0].read_bytes()

    heldout = client.files.create(file=open(pizza_data[1], "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir), training_file=uploaded.id, suffix="pizza", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
        metadata={"purpose": "test"},
        extra_body={"hone": {"train.max_steps": 6, "train.save_every": 2, "train.lr": 5e-3,
                             "data.max_length": 384, "eval.file": heldout.id, "eval.max_new_tokens": 8}})
    assert job.status == "queued" and job.seed == 7 and job.hyperparameters.n_epochs == 1
    assert job.hyperparameters.learning_rate_multiplier == 1.0  # "auto", resolved and recorded
    service.start_worker()
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in
                    ("succeeded", "failed", "cancelled") and j, what="the job to end")
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith(f"ft:{tiny_model_dir.name}:") and ":pizza:" in done.fine_tuned_model
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at

    results = done.model_extra["results"]  # the tuned model's metrics, scored on the held-out file too
    assert results["eval_n"] == 8 and 0.0 <= results["eval_exact_match"] <= 1.0 and results["steps"] == 6
    csv = client.files.content(done.result_files[0]).text.splitlines()
    assert csv[0] == "step,train_loss,valid_loss,learning_rate,tokens" and len(csv) == 1 + 6
    assert client.files.retrieve(done.result_files[0]).purpose == "fine-tune-results"
    run_dir = service.data_dir / "runs" / job.id
    assert metric_steps(service.data_dir, job.id) == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run_dir / "adapter" / "hone.json").read_text())
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert messages[0].startswith("New fine-tuned model created") and messages[-1].startswith("Validating")
    assert messages[1].startswith("Evaluation: ") and "exact_match=" in messages[1]
    metric_events = [e for e in events if e.type == "metrics" and "train_loss" in e.data]
    assert sorted(e.data["step"] for e in metric_events) == [1, 2, 3, 4, 5, 6]
    assert all(e.data["total_steps"] == 6 for e in metric_events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [6, 4, 2]  # every save_every steps and the last
    losses = {e.data["step"]: e.data["train_loss"] for e in metric_events}
    assert all(c.metrics.train_loss == losses[c.step_number] for c in checkpoints)
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-6"
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"purpose": "test"})] == [job.id]
    models = httpx.get(f"{service.url}/v1/models", headers={"Authorization": f"Bearer {service.keys['alpha']}"})
    assert [(m["id"], m["parent"]) for m in models.json()["data"]] == [(done.fine_tuned_model, str(tiny_model_dir))]

    streamed = _sse(service, job.id)
    assert streamed[-1] == "[DONE]"
    assert [e["message"] for e in streamed[:-1]] == messages[::-1]  # oldest first, then the end
    assert client.files.delete(uploaded.id).deleted  # the job ended, so its file may go
    assert not (service.data_dir / "files" / f"{uploaded.id}.jsonl").exists()


def _sse(service, job_id):
    out = []
    headers = {"Authorization": f"Bearer {service.keys['alpha']}"}
    with httpx.stream("GET", f"{service.url}/v1/fine_tuning/jobs/{job_id}/events?stream=true", headers=headers,
                      timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line[len("data: "):]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
