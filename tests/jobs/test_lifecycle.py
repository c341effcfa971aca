"""A tiny-model job end to end through the official `openai` client, a real server and a `hone worker`."""

import json
import os
import subprocess
import sys

import httpx
import openai
import pytest

from tests.jobs.conftest import job_request, metric_steps, upload, wait_for


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
    _call_the_tuned_model(service, done.fine_tuned_model, str(tiny_model_dir), run_dir)
    _the_eval_report_is_linked(service, job.id, run_dir)

    streamed = _sse(service, job.id)
    assert streamed[-1] == "[DONE]"
    assert [e["message"] for e in streamed[:-1]] == messages[::-1]  # oldest first, then the end
    assert client.files.delete(uploaded.id).deleted  # the job ended, so its file may go
    assert not (service.data_dir / "files" / f"{uploaded.id}.jsonl").exists()


def _call_the_tuned_model(service, tuned: str, base: str, run_dir):
    """The same app lists the finished job's model and answers with it at once, as `hone generate` does;
    another project can neither see nor call it."""
    client = service.openai()
    assert sorted((m.id, m.parent) for m in client.models.list()) == sorted([(base, None), (tuned, base)])
    assert client.models.retrieve(tuned).parent == base
    prompt = "Two large pepperoni pizzas, one with extra cheese, please."
    answers = {}
    for model in (tuned, base):
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                              temperature=0, max_tokens=16)
        assert chat.model == model and chat.usage.completion_tokens > 0
        answers[model] = chat.choices[0].message.content
    expected = {model: _hone_generate(prompt, ["--adapter", str(run_dir)] if model == tuned else ["--model", base])
                for model in (tuned, base)}
    assert {m: a.strip() for m, a in answers.items()} == expected and any(expected.values())
    completion = client.completions.create(model=tuned, prompt="Order:", temperature=0, max_tokens=8)
    assert completion.model == tuned and completion.usage.completion_tokens > 0

    other = service.openai("beta")
    assert [m.id for m in other.models.list()] == [base]
    for call in (lambda: other.chat.completions.create(model=tuned, messages=[{"role": "user", "content": prompt}]),
                 lambda: other.completions.create(model=tuned, prompt="Order:"),
                 lambda: other.models.retrieve(tuned)):
        with pytest.raises(openai.NotFoundError) as error:
            call()
        assert error.value.body["code"] == "model_not_found" and error.value.body["param"] == "model"
    assert other.chat.completions.create(model=base, messages=[{"role": "user", "content": prompt}], temperature=0,
                                         max_tokens=16).choices[0].message.content == answers[base]
    with pytest.raises(openai.AuthenticationError):
        service.openai("alpha").with_options(api_key="sk-hone-wrong").models.list()


def _the_eval_report_is_linked(service, job_id: str, run_dir):
    """Once `hone report` was run on the job's run, the job links its page, for its project only."""
    from hone.evaluate.report import write_report

    client = service.client()
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["report"] is None
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}/report").status_code == 404
    write_report(run_dir, progress=False, log=lambda *a: None)
    url = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["report"]
    assert url == f"/v1/fine_tuning/jobs/{job_id}/report"
    page = client.get(url)
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == (run_dir / "report" / "index.html").read_text() and "data:image/png;base64," in page.text
    other = service.client("beta").get(url)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"


def test_jobs_on_two_bases_are_each_served_on_their_own_base(service, pizza_data, tiny_model_dir, tmp_path):
    """A job on the served base and one on another (3 layers: its adapter fits no 2-layer model): both
    listed with their parent, each answers as `hone generate` does with its own base, and the other base
    loads on demand and is callable by name; another project sees neither."""
    from hone.models.tiny import save_tiny_model

    other = str(save_tiny_model(tmp_path / "other-base", layers=3, seed=1))
    client = service.client()
    file_id = upload(client, pizza_data[0]).json()["id"]
    jobs = {base: client.post("/v1/fine_tuning/jobs", json={**job_request(base, file_id, steps=2),
                                                            "suffix": "two"}).json()["id"]
            for base in (str(tiny_model_dir), other)}
    service.start_worker()
    done = {base: wait_for(lambda j=job_id: (r := client.get(f"/v1/fine_tuning/jobs/{j}").json())["status"] in
                           ("succeeded", "failed", "cancelled") and r, what="the job to end")
            for base, job_id in jobs.items()}
    assert all(job["status"] == "succeeded" for job in done.values()), (done, service.worker_logs())
    tuned = {base: job["fine_tuned_model"] for base, job in done.items()}
    listed = {m["id"]: m["parent"] for m in client.get("/v1/models").json()["data"]}
    assert listed == {str(tiny_model_dir): None, other: None, tuned[str(tiny_model_dir)]: str(tiny_model_dir),
                      tuned[other]: other}
    assert client.get(f"/v1/models/{tuned[other]}").json()["parent"] == other
    prompt = "One small margherita, please."
    for model, args in [(tuned[other], ["--adapter", str(service.data_dir / "runs" / jobs[other])]),
                        (tuned[str(tiny_model_dir)], ["--adapter", str(service.data_dir / "runs" / jobs[str(tiny_model_dir)])]),
                        (other, ["--model", other])]:
        chat = client.post("/v1/chat/completions", json={"model": model, "temperature": 0, "max_tokens": 16,
                                                         "messages": [{"role": "user", "content": prompt}]})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"].strip() == _hone_generate(prompt, args), model
    beta = service.client("beta")
    assert [m["id"] for m in beta.get("/v1/models").json()["data"]] == [str(tiny_model_dir)]
    for model in (other, tuned[other]):
        chat = beta.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"


def _hone_generate(prompt: str, model_args: list[str]) -> str:
    out = subprocess.run([sys.executable, "-m", "hone", "generate", prompt, *model_args, "--max-new-tokens", "16"],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


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
