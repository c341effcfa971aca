"""Train→serve parity: a trained adapter's greedy answers from the server equal `hone generate`'s."""

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A tiny LoRA trained a few steps on pizza orders (its held-out prompts are the check's)."""
    from hone.api import train
    from hone.examples import pizza

    out = tmp_path_factory.mktemp("parity")
    train_file, heldout = pizza.write_dataset(out / "data", train=24, heldout=6)
    return train(None, [f"model={tiny_model_dir}", f"data.train={train_file}", f"output_dir={out}", "name=run",
                        "train.lr=5e-3", "train.threads=1", "data.max_length=256", "train.max_steps=4",
                        "method.rank=4"], progress=False, log=lambda *a: None)


def test_server_answers_equal_hone_generate_for_a_trained_adapter(trained, tiny_model_dir, tmp_path):
    import httpx

    from hone import api
    from hone.evaluate.task import read_task
    from hone.models.artifact import read_manifest
    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    manifest = read_manifest(trained.adapter_dir)
    assert manifest["chat_template"]
    items = read_task(str(trained.run_dir.parent / "data" / "heldout.jsonl"))
    conversations = [item.messages for item in items]
    expected = api.generate(conversations, adapter=trained.run_dir, max_new_tokens=24)
    settings = ServeSettings(model=str(tiny_model_dir), adapters={"pizza": str(trained.run_dir)},
                             keys_file=str(tmp_path / "keys.json"), feedback_file=str(tmp_path / "f.jsonl"))
    with running_server(create_app(settings)) as url:
        got = [httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
            "model": "pizza", "messages": m, "temperature": 0, "max_tokens": 24}).json()["choices"][0]["message"]["content"]
            for m in conversations]
    assert [g.strip() for g in got] == expected
    assert any(expected)


def test_the_served_template_is_the_one_recorded_in_hone_json(trained, tiny_model_dir):
    """An adapter whose hone.json records a different template is rendered with that template."""
    import shutil

    from hone.data.template import prompt_ids
    from hone.infer.engine import Engine

    copy = trained.run_dir.parent / "other-template"
    shutil.copytree(trained.adapter_dir, copy)
    manifest = json.loads((copy / "hone.json").read_text())
    manifest["chat_template"] = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    (copy / "hone.json").write_text(json.dumps(manifest))
    engine = Engine.from_spec(str(tiny_model_dir))
    engine.register("other", copy)
    messages = [{"role": "user", "content": "hi"}]
    text = engine.tokenizer.decode(prompt_ids(messages, engine.tokenizer, chat_template=engine.chat_template("other")))
    assert text == "[user] hi\n[assistant] "


def test_hone_verify_reports_identical_outputs(trained):
    heldout = trained.run_dir.parent / "data" / "heldout.jsonl"
    out = subprocess.run([sys.executable, "-m", "hone", "verify", str(trained.run_dir), "--file", str(heldout),
                          "--limit", "4", "--max-new-tokens", "16"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["prompts"] == 4
    assert report["server"] == {"identical": True, "equal": 4, "of": 4}
    assert report["merged"] == {"identical": True, "equal": 4, "of": 4}
