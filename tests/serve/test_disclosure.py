"""What a caller may learn: model names in /metrics only with an admin key (configurable), feedback only on
responses its key could have made, and a field the server cannot honour refused by name, never ignored."""

import httpx
import openai
import pytest

HI = [{"role": "user", "content": "hi"}]


def test_metrics_name_models_only_for_an_admin_key(client, server):
    url, app, keys = server
    client.chat.completions.create(model="adapter-001", messages=HI, max_tokens=2)
    anonymous = httpx.get(f"{url}/metrics").text
    assert "adapter-001" not in anonymous and 'hone_model_kind_requests_total{kind="adapter"}' in anonymous
    admin = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).text
    assert 'hone_model_requests_total{model="adapter-001"}' in admin
    scoped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {keys['scoped']}"})
    assert scoped.status_code == 403 and "adapter-001" not in scoped.text
    settings = app.state.hone.settings
    try:
        settings.metrics_models = "public"
        assert "adapter-001" in httpx.get(f"{url}/metrics").text
        settings.metrics_models = "never"
        assert "adapter-001" not in httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {keys['admin']}"}).text
    finally:
        settings.metrics_models = "admin"


def test_feedback_on_a_model_outside_the_key_is_a_404_naming_nothing(client, server):
    url, _, keys = server
    reply = client.chat.completions.create(model="adapter-002", messages=HI, max_tokens=2)
    scoped = httpx.post(f"{url}/v1/feedback", json={"response_id": reply.id, "rating": 5},
                        headers={"Authorization": f"Bearer {keys['scoped']}"})
    assert scoped.status_code == 404 and "adapter-002" not in scoped.text
    assert scoped.json()["error"]["code"] == "response_not_found"


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "required"},
     "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
      "tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"tools": [{"type": "code_interpreter"}]}, "tools"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
     "response_format"),
])
def test_chat_fields_hone_cannot_honour_are_refused_by_name(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="adapter-000", messages=HI, max_tokens=2, **extra)
    assert caught.value.body["param"] == param and param in caught.value.body["message"]


@pytest.mark.parametrize("extra,param", [({"echo": True}, "echo"), ({"best_of": 3}, "best_of")])
def test_completion_fields_hone_cannot_honour_are_refused_by_name(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="adapter-000", prompt="The quick", max_tokens=2, **extra)
    assert caught.value.body["param"] == param
    assert client.completions.create(model="adapter-000", prompt="The quick", max_tokens=2, echo=False,
                                     best_of=1).choices
