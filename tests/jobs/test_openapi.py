"""The OpenAPI document describes the server: its error statuses, its 405s, its text endpoints; and a
bounded schemathesis run on loopback finds no 5xx and no response outside the document."""

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hone.serve.run import running_server

FUZZ_SECONDS = 40


@pytest.fixture(scope="module")
def service_url(tiny_model_dir, tmp_path_factory):
    """The whole service app (inference, files, jobs, feedback, metrics, admin) with small answers."""
    from hone.infer.engine import Engine
    from hone.jobs.service import ServiceSettings
    from hone.jobs.store import Store
    from hone.serve.service_app import create_service_app
    from hone.serve.settings import ServeSettings

    root = tmp_path_factory.mktemp("openapi")
    store = Store(root / "hone.db")
    key = store.create_key(store.create_project("alpha")["id"])
    settings = ServiceSettings(data_dir=root / "data", max_upload_bytes=50_000)
    serve = ServeSettings(model=str(tiny_model_dir), feedback_file=str(root / "feedback.jsonl"), max_tokens=4,
                          default_max_tokens=2, max_n=2, max_prompt_tokens=64, batch_wait_ms=0)
    app = create_service_app(store, settings, serve_settings=serve, engine=Engine.from_spec(str(tiny_model_dir)))
    with running_server(app) as url:
        yield url, key


def test_the_document_declares_the_statuses_the_server_sends(service_url):
    url, key = service_url
    doc = httpx.get(f"{url}/openapi.json").json()
    operations = {(path, method): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    assert not [where for where, op in operations.items() if "422" in op["responses"]]
    assert {"400", "401", "404", "409", "413"} <= set(operations[("/v1/files/{file_id}", "delete")]["responses"]) | \
        set(operations[("/v1/files", "post")]["responses"])
    assert "429" in operations[("/v1/fine_tuning/jobs", "post")]["responses"]
    assert "409" in operations[("/v1/fine_tuning/jobs/{job_id}/cancel", "post")]["responses"]
    assert "403" in operations[("/admin/adapters", "post")]["responses"]
    assert set(operations[("/metrics", "get")]["responses"]["200"]["content"]) == {"text/plain"}
    assert httpx.get(f"{url}/metrics").headers["content-type"].startswith("text/plain")
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{url}/v1/files?after=&limit=", headers=auth).status_code == 200
    for method, path, allowed in (("PUT", "/v1/files", "GET, HEAD, POST"), ("GET", "/v1/fine_tuning/jobs/x/cancel", "POST"),
                                  ("DELETE", "/v1/chat/completions", "POST")):
        response = httpx.request(method, f"{url}{path}", headers=auth)
        assert response.status_code == 405 and response.headers["allow"] == allowed, (method, path, response.text)
        assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.skipif(shutil.which("st") is None and not (Path(sys.executable).parent / "st").exists(),
                    reason="schemathesis is not installed (pip install -e .[test])")
def test_a_bounded_fuzz_run_finds_no_5xx_and_nothing_undocumented(service_url, tmp_path):
    url, key = service_url
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    done = subprocess.run(
        [st, "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {key}", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "4", "--seed", "19", "--workers", "1",
         "--max-time", str(FUZZ_SECONDS), "--generation-database", "none", "--no-shrink", "--request-timeout", "20",
         "--no-color"],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 60, cwd=tmp_path)  # its cache stays there
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
