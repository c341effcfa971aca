"""The service is safe to share: metrics and feedback reveal no other project's models, uploads and job
requests fail with 400s that name the line or field (and leave nothing half-done), data is private."""

import json
import stat
import subprocess
import sys
import time

import httpx
import openai
import pytest

from hone.jobs.worker import job_error_message
from tests.jobs.conftest import job_request, upload


def _error(response, status):
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    from hone.infer.synthetic import save_random_adapters

    return save_random_adapters(str(tiny_model_dir), tmp_path_factory.mktemp("adapters"), 1)[0]


def finished_model(service, project: str, adapter_dir, tiny_model_dir) -> str:
    """A succeeded job of `project` in the store (its adapter a random one on the tiny base): its model name."""
    from hone.jobs.service import fine_tuned_model_name

    store = service.store
    project_id = store.project_by_name(project)["id"]
    row = {"id": f"ftjob-{project}0000000000000000", "model": str(tiny_model_dir), "training_file": "file-x",
           "suffix": "secret-suffix", "seed": 0, "method": {"type": "supervised"}, "config": {},
           "status": "succeeded", "created_at": int(time.time()), "finished_at": int(time.time()),
           "run_dir": str(service.data_dir / "runs" / "x"), "adapter_dir": str(adapter_dir)}
    store.add_job(project_id, row)
    name = fine_tuned_model_name({**row, "project_id": project_id})
    store.update_job(row["id"], fine_tuned_model=name)
    return name


def test_unauthenticated_metrics_name_no_project_or_model(service, random_adapter, tiny_model_dir):
    model = finished_model(service, "alpha", random_adapter, tiny_model_dir)
    alpha_id = service.store.project_by_name("alpha")["id"]
    reply = service.openai("alpha").chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                            max_tokens=2)
    assert reply.model == model
    text = httpx.get(f"{service.url}/metrics").text
    assert 'hone_model_kind_requests_total{kind="adapter"} 1.0' in text  # counted, without its name
    for secret in (model, alpha_id, "secret-suffix", "hone_model_requests"):
        assert secret not in text, secret
    # a project key is no admin key: it does not unlock per-model series either
    assert _error(service.client("beta").get("/metrics"), 403)["code"] == "admin_disabled"


def test_feedback_stays_in_its_project(service, random_adapter, tiny_model_dir, tmp_path):
    model = finished_model(service, "alpha", random_adapter, tiny_model_dir)
    alpha_id = service.store.project_by_name("alpha")["id"]
    beta_id = service.store.project_by_name("beta")["id"]
    alpha = service.openai("alpha")
    tuned = alpha.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    base = alpha.chat.completions.create(model=str(tiny_model_dir), messages=[{"role": "user", "content": "yo"}],
                                         max_tokens=2)
    beta = service.client("beta")
    for response_id in (tuned.id, base.id):  # the base is callable by both projects; its responses are not shared
        error = _error(beta.post("/v1/feedback", json={"response_id": response_id, "rating": 1}), 404)
        assert error["code"] == "response_not_found"
        assert model not in json.dumps(error) and alpha_id not in json.dumps(error)
    assert service.client("alpha").post("/v1/feedback", json={"response_id": tuned.id, "rating": 5,
                                                               "corrected": "hello"}).status_code == 200
    feedback = service.data_dir.parent / "feedback.jsonl"
    records = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert [(r["response_id"], r["project"]) for r in records] == [(tuned.id, alpha_id)]
    for project, count in ((alpha_id, 1), (beta_id, 0)):
        out = tmp_path / f"{project}.jsonl"
        done = subprocess.run([sys.executable, "-m", "hone", "feedback", "export", str(out), "--file", str(feedback),
                               "--project", project], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert len(out.read_text().splitlines()) == count


def test_a_deeply_nested_line_is_a_400_naming_it_and_nothing_is_kept(service, tmp_path):
    deep = tmp_path / "deep.jsonl"
    good = json.dumps({"prompt": "a", "completion": "b"})
    deep.write_text(good + "\n" + '{"prompt": ' + "[" * 10_000 + "]" * 10_000 + ', "completion": "b"}\n')
    error = _error(upload(service.client(), deep), 400)
    assert error["param"] == "file" and "deep.jsonl:2" in error["message"] and "nested" in error["message"]
    assert service.client().get("/v1/files").json()["data"] == []
    assert [p.name for p in (service.data_dir / "files").iterdir()] == []


def test_an_upload_that_cannot_be_recorded_leaves_no_file(service, pizza_data):
    with service.store.engine.begin() as db:  # the database refuses the row
        db.exec_driver_sql("CREATE TRIGGER no_files BEFORE INSERT ON files BEGIN SELECT RAISE(ABORT, 'full'); END")
    response = upload(service.client(), pizza_data[0])
    assert response.status_code == 500 and "Traceback" not in response.text
    assert [p.name for p in (service.data_dir / "files").iterdir()] == []


def _rows(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_method_that_does_not_fit_the_file_is_refused_at_create(service, pizza_data, tiny_model_dir, tmp_path):
    client = service.client()
    chat = upload(client, pizza_data[0]).json()["id"]
    dpo = job_request(tiny_model_dir, chat, steps=2, method={"type": "dpo", "dpo": {"hyperparameters": {}}})
    error = _error(client.post("/v1/fine_tuning/jobs", json=dpo), 400)
    assert (error["param"], error["code"]) == ("training_file", "invalid_training_file")
    assert chat in error["message"] and str(service.data_dir) not in error["message"]
    prompts = _rows(tmp_path / "prompts.jsonl", [{"messages": [{"role": "user", "content": f"Say {i}"}]}
                                                 for i in range(12)])
    prompts_id = upload(client, prompts).json()["id"]
    error = _error(client.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, prompts_id, steps=2)), 400)
    assert (error["param"], error["code"]) == ("training_file", "invalid_training_file") and "prompts" in error["message"]
    few = _rows(tmp_path / "few.jsonl", [{"prompt": f"{i}", "completion": "x"} for i in range(9)])
    few_id = upload(client, few).json()["id"]
    error = _error(client.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, few_id, steps=2)), 400)
    assert error["param"] == "training_file" and "at least 10" in error["message"]
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_a_failed_job_names_its_file_by_id_never_a_server_path(tmp_path):
    data_dir = tmp_path / "service"
    train = data_dir / "files" / "file-abc.jsonl"
    job = {"id": "ftjob-1", "training_file": "file-abc", "validation_file": None, "run_dir": str(data_dir / "runs" / "ftjob-1"),
           "config": {"data": {"train": str(train)}}}
    log = tmp_path / "worker.log"
    log.write_text(f"loading\nerror: {train}:3: messages[1].role is 'bot'\n  hint: see {data_dir}/runs/ftjob-1/x\n")
    message = job_error_message(log, 3, job, data_dir)
    assert message.startswith("error: file-abc:3: messages[1].role") and str(tmp_path) not in message


def test_request_fields_hone_cannot_honour_are_refused_by_name(service, pizza_data, tiny_model_dir):
    client = service.client()
    file_id = upload(client, pizza_data[0]).json()["id"]
    other = job_request(tiny_model_dir, file_id, steps=2, integrations=[{"type": "comet", "comet": {"project": "p"}}])
    error = _error(client.post("/v1/fine_tuning/jobs", json=other), 400)  # wandb maps to hone's tracking; no other
    assert error["param"] == "integrations[0].type" and "comet" in error["message"]
    assert _error(client.post("/v1/fine_tuning/jobs", json={**job_request(tiny_model_dir, file_id, steps=2),
                                                            "n_epochs": 3}), 400)["param"] == "n_epochs"
    assert client.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, file_id, steps=2,
                                                                integrations=[])).status_code == 200
    with pytest.raises(openai.BadRequestError) as caught:
        service.openai().chat.completions.create(model=str(tiny_model_dir), messages=[{"role": "user", "content": "x"}],
                                                 response_format={"type": "json_object"})
    assert caught.value.body["param"] == "response_format"


def test_the_data_directory_and_its_files_are_private(service, pizza_data, tiny_model_dir):
    upload(service.client(), pizza_data[0])
    reply = service.openai().chat.completions.create(model=str(tiny_model_dir), max_tokens=2,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert service.client().post("/v1/feedback", json={"response_id": reply.id, "rating": 4}).status_code == 200
    assert stat.S_IMODE(service.data_dir.stat().st_mode) == 0o700
    files = [service.db, *service.data_dir.glob("files/*"), service.data_dir.parent / "feedback.jsonl"]
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((service.data_dir / "files").stat().st_mode) == 0o700
