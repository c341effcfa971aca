"""The HTTP API on a real uvicorn: OpenAI-shaped errors, limits, and isolation between projects."""

import json

from tests.jobs.conftest import job_request, upload


def _error(response, status):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["message"]
    return error


def test_every_endpoint_is_invisible_across_projects(service, pizza_data, tiny_model_dir):
    alpha, beta = service.client("alpha"), service.client("beta")
    file_id = upload(alpha, pizza_data[0]).json()["id"]
    job = alpha.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, file_id, steps=2)).json()
    assert job["status"] == "queued"
    for method, path in [("GET", f"/v1/files/{file_id}"), ("GET", f"/v1/files/{file_id}/content"),
                         ("GET", f"/v1/files/{file_id}/report"), ("DELETE", f"/v1/files/{file_id}"),
                         ("GET", f"/v1/fine_tuning/jobs/{job['id']}"),
                         ("POST", f"/v1/fine_tuning/jobs/{job['id']}/pause"),
                         ("POST", f"/v1/fine_tuning/jobs/{job['id']}/resume"),
                         ("POST", f"/v1/fine_tuning/jobs/{job['id']}/cancel"),
                         ("GET", f"/v1/fine_tuning/jobs/{job['id']}/events"),
                         ("GET", f"/v1/fine_tuning/jobs/{job['id']}/events?stream=true"),
                         ("GET", f"/v1/fine_tuning/jobs/{job['id']}/checkpoints")]:
        assert _error(beta.request(method, path), 404)["code"] == "not_found", path
        # the owner gets 200 from each (a DELETE is tried as a GET; the stream ends as the job was cancelled)
        assert alpha.request("GET" if method == "DELETE" else method, path).status_code == 200, path
    assert beta.get("/v1/files").json()["data"] == []
    assert beta.get("/v1/fine_tuning/jobs").json()["data"] == []
    assert beta.get(f"/v1/fine_tuning/jobs?after={job['id']}").json()["data"] == []
    assert _error(beta.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, file_id, steps=2)),
                  400)["param"] == "training_file"
    assert [f["id"] for f in alpha.get("/v1/files").json()["data"]] == [file_id]
    assert alpha.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "cancelled"  # alpha's, above


def test_keys_are_required_and_checked(service):
    import httpx

    anonymous = httpx.get(f"{service.url}/v1/files")
    assert _error(anonymous, 401)["code"] == "invalid_api_key"
    wrong = httpx.get(f"{service.url}/v1/files", headers={"Authorization": "Bearer sk-hone-nope"})
    assert _error(wrong, 401)["code"] == "invalid_api_key"


def test_a_bad_file_is_rejected_with_its_report(service, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]})
                   + "\nnot json\n")
    error = _error(upload(service.client(), bad), 400)
    assert error["code"] == "invalid_file" and error["param"] == "file"
    assert "bad.jsonl:1: messages[1].role" in error["message"] and "bad.jsonl:2" in error["message"]
    assert error["report"]["valid"] == 0 and len(error["report"]["issues"]) == 2
    assert service.client().get("/v1/files").json()["data"] == []
    assert not list((service.data_dir / "files").iterdir())


def test_limits_and_malformed_requests(service, pizza_data, tiny_model_dir, tmp_path):
    client = service.client()
    big = tmp_path / "big.jsonl"
    line = json.dumps({"prompt": "x" * 1000, "completion": "y"}) + "\n"
    big.write_text(line * 300)  # ~300 KB, over the 200 KB limit
    assert _error(upload(client, big), 413)["code"] == "file_too_large"
    assert _error(client.post("/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "batch"}),
                  400)["param"] == "purpose"
    assert _error(client.post("/v1/files", data={"purpose": "fine-tune"}), 400)["param"] == "file"
    file_id = upload(client, pizza_data[0]).json()["id"]
    assert _error(client.post("/v1/fine_tuning/jobs", content=b"{not json"), 400)["code"] == "invalid_json"
    pairs = tmp_path / "pairs.jsonl"  # a DPO job trains on preference pairs
    pairs.write_text("".join(json.dumps({"prompt": f"Order {i}", "chosen": "yes", "rejected": "no"}) + "\n"
                             for i in range(10)))
    dpo = job_request(tiny_model_dir, upload(client, pairs).json()["id"], steps=2,
                      method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5}}})
    dpo_job = client.post("/v1/fine_tuning/jobs", json=dpo).json()  # hone's DPO objective, beta recorded
    assert dpo_job["method"]["dpo"]["hyperparameters"]["beta"] == 0.5
    objective = service.store.get_job(None, dpo_job["id"])["config"]["objective"]
    assert objective["type"] == "dpo" and objective["beta"] == 0.5
    client.post(f"/v1/fine_tuning/jobs/{dpo_job['id']}/cancel")
    dpo["method"]["dpo"]["hyperparameters"]["beta"] = -1
    assert _error(client.post("/v1/fine_tuning/jobs", json=dpo), 400)["param"] == "method.dpo.hyperparameters.beta"
    rl = job_request(tiny_model_dir, file_id, steps=2, method={"type": "reinforcement"})
    assert _error(client.post("/v1/fine_tuning/jobs", json=rl), 400)["param"] == "method.reinforcement.grader"
    bad_epochs = job_request(tiny_model_dir, file_id, steps=2)
    bad_epochs["method"]["supervised"]["hyperparameters"]["n_epochs"] = 0
    assert _error(client.post("/v1/fine_tuning/jobs", json=bad_epochs),
                  400)["param"] == "method.supervised.hyperparameters.n_epochs"
    assert _error(client.post("/v1/fine_tuning/jobs", json={**job_request(tiny_model_dir, file_id, steps=2),
                                                            "model": "no-such-model"}), 400)["param"] == "model"
    reserved = job_request(tiny_model_dir, file_id, steps=2, hone={"output_dir": "/tmp"})
    assert _error(client.post("/v1/fine_tuning/jobs", json=reserved), 400)["param"] == "hone.output_dir"
    bad_key = job_request(tiny_model_dir, file_id, steps=2, hone={"train.lrr": 1})
    assert "train.lrr: unknown setting" in _error(client.post("/v1/fine_tuning/jobs", json=bad_key), 400)["message"]
    assert _error(client.get("/v1/fine_tuning/jobs?limit=0"), 400)["param"] == "limit"
    assert _error(client.get("/v1/nowhere"), 404)["code"] == "not_found"
    for _ in range(3):  # the project's limit of jobs that have not ended
        assert client.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, file_id, steps=2)).is_success
    assert _error(client.post("/v1/fine_tuning/jobs", json=job_request(tiny_model_dir, file_id, steps=2)),
                  429)["code"] == "rate_limit_exceeded"
    assert _error(client.delete(f"/v1/files/{file_id}"), 409)["code"] == "file_in_use"


def test_auto_hyperparameters_are_resolved_and_recorded(service, pizza_data, tiny_model_dir):
    client = service.client()
    file_id = upload(client, pizza_data[0]).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", json={"model": str(tiny_model_dir), "training_file": file_id,
                                                    "hyperparameters": {"learning_rate_multiplier": 2}}).json()
    # 40 examples: auto n_epochs 3, auto batch_size 4; the multiplier scales hone's LoRA rate 2e-4
    assert job["hyperparameters"] == {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0}
    assert job["method"]["type"] == "supervised" and isinstance(job["seed"], int)
    config = service.store.get_job(None, job["id"])["config"]
    assert config["train"]["epochs"] == 3 and config["train"]["batch_size"] == 4
    assert config["train"]["lr"] == 4e-4 and config["train"]["seed"] == job["seed"]


def test_job_list_pagination_and_metadata_filter(service, pizza_data, tiny_model_dir):
    client = service.client()
    file_id = upload(client, pizza_data[0]).json()["id"]
    ids = []
    for n in range(3):
        body = job_request(tiny_model_dir, file_id, steps=2, metadata={"team": "red" if n != 1 else "blue"})
        ids.append(client.post("/v1/fine_tuning/jobs", json=body).json()["id"])
        client.post(f"/v1/fine_tuning/jobs/{ids[-1]}/cancel")
    first = client.get("/v1/fine_tuning/jobs?limit=2").json()
    assert [j["id"] for j in first["data"]] == [ids[2], ids[1]] and first["has_more"]
    rest = client.get(f"/v1/fine_tuning/jobs?limit=2&after={ids[1]}").json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and not rest["has_more"]
    red = client.get("/v1/fine_tuning/jobs", params={"metadata[team]": "red"}).json()
    assert [j["id"] for j in red["data"]] == [ids[2], ids[0]]
    events = client.get(f"/v1/fine_tuning/jobs/{ids[0]}/events").json()["data"]
    assert events[0]["message"] == "Job cancelled" and events[-1]["message"].startswith("Validating training file")


def test_malformed_job_requests_get_400_never_500(service, pizza_data, tiny_model_dir):
    client = service.client()
    file_id = upload(client, pizza_data[0]).json()["id"]
    good = job_request(tiny_model_dir, file_id, steps=2)
    bodies = [[], "x", 3, {}, {**good, "model": 5}, {**good, "training_file": ["a"]},
              {**good, "validation_file": 7}, {**good, "seed": "x"}, {**good, "seed": True}, {**good, "suffix": "a b"},
              {**good, "metadata": {"k": 1}}, {**good, "method": "supervised"}, {**good, "method": {"type": None}},
              {**good, "method": {"type": "supervised", "supervised": "x"}},
              {**good, "method": {"type": "supervised", "supervised": {"hyperparameters": [1]}}},
              {**good, "method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": "big"}}}},
              {**good, "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2.5}}}},
              {**good, "hyperparameters": "x", "method": None}, {**good, "hone": [1]},
              {**good, "hone": {"train.max_steps": "many"}}, {**good, "hone": {"method.type": "nope"}}]
    for body in bodies:
        response = client.post("/v1/fine_tuning/jobs", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["message"]
    for path in ["/v1/fine_tuning/jobs/x/events?after=ftevent-zz", "/v1/files?order=up",
                 "/v1/fine_tuning/jobs?limit=abc", "/v1/fine_tuning/jobs/x/events?stream=maybe"]:
        response = client.get(path)
        assert response.status_code in (400, 404) and response.json()["error"]["message"], path
    assert client.get("/v1/files?after=nope").json()["data"] == []  # an unknown cursor: nothing after it


def test_a_dpo_job_can_train_kto_simpo_or_orpo_with_its_beta(service, tiny_model_dir, tmp_path):
    """OpenAI's dpo method has one slot, beta; hone's `objective.type` picks the preference objective it sets."""
    client = service.client()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Order {i}", "chosen": "yes", "rejected": "no"}) + "\n"
                             for i in range(10)))
    file_id = upload(client, pairs).json()["id"]
    for objective in ("kto", "simpo", "orpo"):
        request = job_request(tiny_model_dir, file_id, steps=2, hone={"objective.type": objective},
                              method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25}}})
        job = client.post("/v1/fine_tuning/jobs", json=request).json()
        assert "id" in job, job
        config = service.store.get_job(None, job["id"])["config"]["objective"]
        assert (config["type"], config["beta"]) == (objective, 0.25)
        client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
