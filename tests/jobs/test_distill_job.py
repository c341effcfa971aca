"""A job with hone's `distill` method: the student learns a teacher endpoint's answers (hone's own server on
loopback) to the training file's prompts, as objective distill in sequence mode."""

import json

import pytest

from tests.jobs.conftest import upload, wait_for

WORDS = ["pizza", "fox", "dog", "cheese", "order", "Paris", "quick", "lazy", "olives", "crust"]


@pytest.fixture
def teacher(tiny_model_dir, tmp_path):
    """(base URL, model name): hone's server on the tiny model with a random LoRA adapter (the "fine-tune" being
    moved), open (no keys)."""
    from hone.infer.synthetic import save_random_adapters
    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    adapter = save_random_adapters(str(tiny_model_dir), tmp_path / "adapters", 1)[0]
    settings = ServeSettings(model=str(tiny_model_dir), adapters_dir=str(adapter.parent), keys_file=str(tmp_path / "no-keys.json"),
                             feedback_file=str(tmp_path / "feedback.jsonl"))
    app = create_app(settings)
    with running_server(app) as url:
        yield f"{url}/v1", adapter.name


def test_a_distill_job_trains_on_the_teachers_answers_and_succeeds(service, teacher, tiny_model_dir, tmp_path):
    url, name = teacher
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}"}]}) + "\n"
                               for w in WORDS))
    client = service.client()
    file_id = upload(client, prompts).json()["id"]
    distill = {"teacher_base_url": url, "teacher_model": name,
               "hyperparameters": {"batch_size": 2, "max_new_tokens": 6}}
    body = {"model": str(tiny_model_dir), "training_file": file_id, "method": {"type": "distill", "distill": distill},
            "hone": {"train.max_steps": 2}}
    for field, value in (("teacher_base_url", "ftp://host"), ("teacher_model", "")):
        bad = json.loads(json.dumps(body))
        bad["method"]["distill"][field] = value
        error = client.post("/v1/fine_tuning/jobs", json=bad)
        assert error.status_code == 400 and error.json()["error"]["param"] == f"method.distill.{field}", error.text
    response = client.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["method"]["distill"]["teacher_model"] == name
    assert job["method"]["distill"]["hyperparameters"]["temperature"] == 0.0
    objective = service.store.get_job(None, job["id"])["config"]["objective"]
    assert (objective["type"], objective["mode"], objective["teacher"], objective["teacher_model"],
            objective["max_new_tokens"]) == ("distill", "sequence", url, name, 6)
    service.start_worker()
    done = wait_for(lambda: (j := client.get(f"/v1/fine_tuning/jobs/{job['id']}").json())["status"] in
                    ("succeeded", "failed", "cancelled") and j, what="the distill job to end")
    assert done["status"] == "succeeded", (done["error"], service.worker_logs())
    metrics = [json.loads(line) for line in
               (service.data_dir / "runs" / job["id"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics if "loss" in r] == [1, 2]
