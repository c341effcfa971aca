"""The error catalogue: every bad request gets OpenAI's error JSON and the right 4xx, never a 500."""

import json

import pytest

GOOD = {"model": "adapter-000", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def with_(**changes):
    return json.dumps({**GOOD, **changes})


CASES = [
    # (name, path, body, headers key, status, code, param)
    ("unknown model", "/v1/chat/completions", with_(model="nope"), "admin", 404, "model_not_found", "model"),
    ("malformed JSON", "/v1/chat/completions", '{"model": ', "admin", 400, "invalid_json", None),
    ("not an object", "/v1/chat/completions", "[1, 2]", "admin", 400, "invalid_value", None),
    ("missing messages", "/v1/chat/completions", json.dumps({"model": "adapter-000"}), "admin", 400,
     "invalid_value", "messages"),
    ("bad role", "/v1/chat/completions", with_(messages=[{"role": "bot", "content": "x"}]), "admin", 400,
     "invalid_value", "messages.0.role"),
    ("temperature too high", "/v1/chat/completions", with_(temperature=7), "admin", 400, "invalid_value",
     "temperature"),
    ("top_p zero", "/v1/chat/completions", with_(top_p=0), "admin", 400, "invalid_value", "top_p"),
    ("max_tokens negative", "/v1/chat/completions", with_(max_tokens=-1), "admin", 400, "invalid_value",
     "max_tokens"),
    ("max_tokens over the limit", "/v1/chat/completions", with_(max_tokens=65), "admin", 400, "invalid_value",
     "max_tokens"),
    ("n over the limit", "/v1/chat/completions", with_(n=5), "admin", 400, "invalid_value", "n"),
    ("too many stop strings", "/v1/chat/completions", with_(stop=list("abcde")), "admin", 400, "invalid_value",
     "stop"),
    ("prompt too long", "/v1/chat/completions", with_(messages=[{"role": "user", "content": "pizza " * 300}]),
     "admin", 400, "context_length_exceeded", "messages"),
    ("completion prompt too long", "/v1/completions",
     json.dumps({"model": "adapter-000", "prompt": "pizza " * 300}), "admin", 400, "context_length_exceeded",
     "prompt"),
    ("body too large", "/v1/chat/completions", with_(user="x" * 30_000), "admin", 413, "request_too_large", None),
    ("no key", "/v1/chat/completions", with_(), None, 401, "invalid_api_key", None),
    ("wrong key", "/v1/chat/completions", with_(), "wrong", 401, "invalid_api_key", None),
    ("key not scoped to the model", "/v1/chat/completions", with_(model="adapter-001"), "scoped", 403,
     "model_not_permitted", "model"),
    ("unknown route", "/v1/nothing", with_(), "admin", 404, "not_found", None),
    ("feedback for an unknown response", "/v1/feedback", json.dumps({"response_id": "x", "rating": 5}), "admin",
     404, "response_not_found", "response_id"),
    ("feedback without rating or correction", "/v1/feedback", json.dumps({"response_id": "x"}), "admin", 400,
     "invalid_value", None),
    ("register a folder that is no adapter", "/admin/adapters", json.dumps({"name": "x", "path": "/tmp"}), "admin",
     400, "invalid_model", "/tmp"),
    ("register a bad name", "/admin/adapters", json.dumps({"name": "../x", "path": "/tmp"}), "admin", 400,
     "invalid_request", "name"),
]


@pytest.mark.parametrize("name,path,body,key,status,code,param", CASES, ids=[c[0] for c in CASES])
def test_error_catalogue(server, name, path, body, key, status, code, param):
    import httpx

    url, app, keys = server
    headers = {"content-type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {keys.get(key, 'hone-not-a-key')}"
    r = httpx.post(url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code and error["param"] == param
    assert error["message"]


def test_scoped_key_sees_and_uses_only_its_models(server):
    import openai

    url, _, keys = server
    scoped = openai.OpenAI(base_url=f"{url}/v1", api_key=keys["scoped"], max_retries=0)
    assert [m.id for m in scoped.models.list().data] == ["adapter-000"]
    r = scoped.chat.completions.create(model="adapter-000", messages=GOOD["messages"], max_tokens=2)
    assert r.choices[0].message.content is not None
    with pytest.raises(openai.PermissionDeniedError):
        scoped.chat.completions.create(model="adapter-001", messages=GOOD["messages"], max_tokens=2)


def test_errors_are_counted_in_metrics(server):
    import httpx

    url, _, _ = server
    httpx.post(url + "/v1/chat/completions", content=with_(), headers={"content-type": "application/json"})
    text = httpx.get(url + "/metrics").text
    assert 'hone_request_errors_total{code="401",route="/v1/chat/completions"}' in text


def test_prompt_plus_max_tokens_beyond_the_model_context_is_refused(server):
    import httpx

    url, app, keys = server
    settings = app.state.hone.settings
    saved = settings.max_prompt_tokens, settings.max_tokens
    settings.max_prompt_tokens, settings.max_tokens = 10_000, 1_000  # only the model's 1024 positions limit now
    try:
        body = {**GOOD, "messages": [{"role": "user", "content": "pizza " * 150}], "max_tokens": 1000}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {keys['admin']}"})
    finally:
        settings.max_prompt_tokens, settings.max_tokens = saved
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded" and r.json()["error"]["param"] == "max_tokens"
