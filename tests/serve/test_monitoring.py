"""Metrics, the JSON request log, feedback and its export, and keys managed by the CLI."""

import json
import subprocess
import sys


def hone(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hone", *args], capture_output=True, text=True, env=env)


def test_metrics_count_requests_tokens_adapters_and_cache(client, server):
    import httpx

    url = server[0]
    r = client.chat.completions.create(model="adapter-002", messages=[{"role": "user", "content": "1 2 3"}],
                                       max_tokens=4, temperature=0)
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {server[2]['admin']}"}).text
    for name in ("hone_requests_total", "hone_request_latency_seconds_bucket", "hone_time_to_first_token_seconds_bucket",
                 "hone_generated_tokens_total", "hone_tokens_per_second", "hone_adapters_loaded"):
        assert name in text
    assert 'hone_model_requests_total{model="adapter-002"}' in text
    assert 'hone_adapter_cache_events_total{event="miss"}' in text
    generated = next(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("hone_generated_tokens_total"))
    assert generated >= r.usage.completion_tokens


def test_request_log_is_json_without_content_by_default(client, server):
    app = server[1]
    r = client.chat.completions.create(model="adapter-000", messages=[{"role": "user", "content": "secret"}],
                                       max_tokens=2, temperature=0)
    records = [json.loads(line) for line in open(app.state.hone.settings.request_log)]
    mine = next(rec for rec in records if rec.get("id") == r.id)
    assert mine["model"] == "adapter-000" and mine["status"] == 200 and mine["key"].startswith("key-")
    assert mine["completion_tokens"] == r.usage.completion_tokens and mine["latency_ms"] > 0
    assert "secret" not in json.dumps(records)


def test_feedback_then_export_gives_training_data(client, server, tmp_path):
    import httpx

    url, app, keys = server
    auth = {"Authorization": f"Bearer {keys['admin']}"}
    messages = [{"role": "user", "content": "Order a large pizza"}]
    good = client.chat.completions.create(model="adapter-000", messages=messages, max_tokens=4, temperature=0)
    bad = client.chat.completions.create(model="adapter-001", messages=messages, max_tokens=4, temperature=0)
    meh = client.completions.create(model="adapter-001", prompt="The quick brown", max_tokens=4, temperature=0)
    for body in ({"response_id": good.id, "rating": 5},
                 {"response_id": bad.id, "rating": 1, "corrected": '{"size": "large"}'},
                 {"response_id": meh.id, "rating": 2}):
        r = httpx.post(f"{url}/v1/feedback", json=body, headers=auth)
        assert r.status_code == 200, r.text
    out = tmp_path / "next-round.jsonl"
    result = hone("feedback", "export", str(out), "--file", app.state.hone.settings.feedback_file)
    assert result.returncode == 0, result.stderr
    assert "1 corrected, 1 rated >= 4, 1 skipped" in result.stdout
    records = {json.dumps(r["messages"][-1]) : r for r in map(json.loads, out.read_text().splitlines())}
    assert {r["messages"][-1]["content"] for r in records.values()} == {good.choices[0].message.content,
                                                                         '{"size": "large"}'}
    assert all(r["messages"][:-1] == messages for r in records.values())
    check = hone("data", "check", str(out), "--no-tokens")  # hone reads it back as training data
    assert check.returncode == 0, check.stdout


def test_keys_cli_create_list_revoke_takes_effect_on_a_running_server(server):
    import httpx

    url, app, _ = server
    keys_file = app.state.hone.settings.keys_file
    created = hone("keys", "create", "ci-bot", "--model", "adapter-002", "--keys-file", keys_file)
    assert created.returncode == 0, created.stderr
    plain = created.stdout.split("store it now): ")[1].strip()
    assert plain not in open(keys_file).read()  # only the hash is stored
    body = {"model": "adapter-002", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {plain}"}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code == 200
    listing = hone("keys", "list", "--keys-file", keys_file)
    assert "ci-bot" in listing.stdout and plain not in listing.stdout
    assert hone("keys", "revoke", "ci-bot", "--keys-file", keys_file).returncode == 0
    assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60).status_code == 401
