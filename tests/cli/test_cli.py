"""The `hone` command as a user meets it: reports, exit codes, errors without tracebacks."""

import json
import subprocess
import sys

import pytest


def hone(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hone", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_the_commands():
    out = hone("--help")
    assert out.returncode == 0
    for command in ("data", "train", "eval", "report", "compare", "generate", "demo"):
        assert command in out.stdout


def test_data_check_reports_every_error_with_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
             "{not json",
             json.dumps({"messages": [{"role": "bot", "content": "x"}]})]
    path.write_text("\n".join(lines) + "\n")
    out = hone("data", "check", str(path), "--no-tokens")
    assert out.returncode == 1
    assert f"{path}:2:" in out.stdout and f"{path}:3: messages[0].role" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_data_check_knows_the_objective_and_reports_lines_it_cannot_train_on(tmp_path):
    path = tmp_path / "train.jsonl"
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    user_only = {"messages": [{"role": "user", "content": "and then?"}]}  # a graded prompt: nothing to learn
    path.write_text("\n".join(json.dumps(r) for r in (chat, user_only, chat | {"weight": 1})) + "\n")
    assert hone("data", "check", str(path), "--no-tokens").returncode == 0  # well-formed, whatever the objective
    out = hone("data", "check", str(path), "--no-tokens", "--objective", "sft")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{path}:2: is a graded_prompt record; objective sft takes chat or prompt_completion" in out.stdout
    assert f"{path}:1:" not in out.stdout and f"{path}:3:" not in out.stdout
    assert "2 valid, 1 invalid" in out.stdout and "hint: objective sft expects:" in out.stdout
    config = tmp_path / "run.yaml"
    config.write_text("objective: {type: dpo}\ndata: {max_length: 64}\n")
    out = hone("data", "check", str(path), "--no-tokens", "--config", str(config), "--json")
    issues = json.loads(out.stdout)["issues"]
    assert out.returncode == 1 and [i["line"] for i in issues] == json.loads(out.stdout)["misfits"] == [1, 2, 3]
    assert all("objective dpo takes preference records" in i["message"] for i in issues)
    out = hone("data", "check", str(path), "--no-tokens", "--objective", "sfd")
    assert out.returncode == 2 and "unknown objective 'sfd'" in out.stderr and "Traceback" not in out.stderr


def test_train_with_a_bad_config_fails_cleanly(tmp_path):
    out = hone("train", "train.lr=-1", "method.rank=zero", cwd=tmp_path)
    assert out.returncode == 2
    assert "train.lr" in out.stderr and "method.rank" in out.stderr
    assert "Traceback" not in out.stderr


def test_train_with_a_broken_data_file_lists_the_lines(tmp_path, tiny_model_dir):
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": 3, "completion": "b"}\n\xff\xfe\n')
    out = hone("train", f"model={tiny_model_dir}", f"data.train={data}", f"output_dir={tmp_path}", "--no-progress")
    assert out.returncode == 3
    assert f"{data}:2: prompt" in out.stderr and f"{data}:3:" in out.stderr
    assert "Traceback" not in out.stderr


def test_eval_and_generate_on_the_base_model(tmp_path, tiny_model_dir):
    from hone.examples import pizza

    _, heldout = pizza.write_dataset(tmp_path, train=2, heldout=3)
    out = hone("eval", str(heldout), "--model", str(tiny_model_dir), "--metric", "json", "--max-new-tokens", "4",
               "--predictions", str(tmp_path / "p.jsonl"))
    assert out.returncode == 0, out.stderr
    assert "field_accuracy" in out.stdout
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    out = hone("generate", "hello", "--model", str(tiny_model_dir), "--max-new-tokens", "3")
    assert out.returncode == 0, out.stderr
    out = hone("generate", "hello", "--model", str(tmp_path / "nope"))
    assert out.returncode == 4 and "unknown model" in out.stderr


@pytest.mark.parametrize("command", ["train", "estimate"])
def test_nproc_below_one_is_a_clear_error(command):
    out = hone(command, "--nproc", "0", "run.yaml")
    assert out.returncode == 2
    assert "argument --nproc: '0': expected a process count of at least 1" in out.stderr
    assert "Traceback" not in out.stderr
