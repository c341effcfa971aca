"""`hone serve` as a user starts it: a subprocess on a free port, adapters from flags, then Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx


def test_hone_serve_starts_lists_adapters_answers_and_stops(tmp_path, random_adapters):
    from hone.serve.run import free_port

    port = free_port()
    env = {**os.environ, "HONE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "hone", "serve", "--adapter", f"one={random_adapters[0]}",
                             "--port", str(port), "--api-key", "sekret", "--request-log", str(tmp_path / "log.jsonl"),
                             "--set", "threads=1", "--set", "max_n=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": "Bearer sekret"}
        deadline = time.monotonic() + 120
        while True:
            try:
                models = httpx.get(f"{url}/v1/models", headers=headers).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.3)
        one = next(m for m in models["data"] if m["id"] == "one")
        assert one["parent"] == json.loads((random_adapters[0] / "hone.json").read_text())["base_model"]["id"]
        body = {"model": "one", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "n": 3}
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["param"] == "n"  # --set max_n=2 took effect
        body["n"] = 2
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 200 and len(r.json()["choices"]) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "serving" in out and "Traceback" not in out
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) >= 3


def test_hone_serve_rejects_a_bad_adapter_flag_and_setting(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hone", "serve", "--adapter", "no-equals-sign"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--adapter" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "hone", "serve", "--set", "max_n=0", "--model", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "max_n" in out.stderr and "Traceback" not in out.stderr
