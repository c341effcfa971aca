"""`hone distill`: hone's own server on loopback is the teacher; its answers become a training file with
provenance, and a tiny student is fine-tuned on it."""

import json

from hone.cli import main
from hone.data.read import read_examples

PROMPTS = [
    {"messages": [{"role": "user", "content": "Two large pepperoni pizzas"}]},
    {"messages": [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "One margherita"},
                  {"role": "assistant", "content": "{}"}, {"role": "user", "content": "Make it two"}]},
    {"messages": [{"role": "user", "content": "A small hawaiian, delivered"}]},
]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def distill_args(prompts, url, *extra):
    return ["distill", str(prompts), "--teacher-base-url", url, "--teacher-model", "adapter-001",
            "--max-new-tokens", "6", "--no-progress", *extra]


def test_distill_keeps_the_teachers_exact_answers_and_trains_a_student(server, client, tiny_model_dir, tmp_path):
    url, _, keys = server
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "teacher.jsonl"
    code = main(distill_args(prompts, f"{url}/v1", "--api-key", keys["admin"], "--out", str(out), "--train",
                             f"model={tiny_model_dir}", "train.max_steps=2", "train.batch_size=2",
                             f"output_dir={tmp_path / 'runs'}", "name=student"))
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(PROMPTS)
    for line, (prompt, record) in enumerate(zip(PROMPTS, records), start=1):
        expected = client.chat.completions.create(model="adapter-001", messages=prompt["messages"], max_tokens=6,
                                                  temperature=0).choices[0].message.content.strip()
        assert record["messages"][:-1] == [{**m, "weight": 0} if m["role"] == "assistant" else m
                                           for m in prompt["messages"]]
        assert record["messages"][-1] == {"role": "assistant", "content": expected}
        provenance = record["provenance"]
        assert provenance["teacher_base_url"] == f"{url}/v1" and provenance["teacher_model"] == "adapter-001"
        assert provenance["source"] == f"{prompts}:{line}"
        assert provenance["temperature"] == 0.0 and provenance["max_new_tokens"] == 6 and provenance["sampled_at"]
        assert keys["admin"] not in json.dumps(record)
    examples, _ = read_examples(out)  # hone's reader takes the file, provenance and all
    assert [e.format for e in examples] == ["chat"] * len(PROMPTS)
    run = tmp_path / "runs" / "student"
    manifest = json.loads((run / "adapter" / "hone.json").read_text())
    assert manifest["status"] == "succeeded"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps[-1] == 2


def test_an_unreachable_teacher_or_an_http_error_is_named_without_a_traceback(server, tmp_path, capsys):
    url = server[0]
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    assert main(distill_args(prompts, "http://127.0.0.1:9/v1", "--no-train")) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/v1" in err and "Traceback" not in err and "--teacher-base-url" in err
    assert main(distill_args(prompts, f"{url}/v1", "--no-train")) == 2  # no key: the server refuses
    err = capsys.readouterr().err
    assert f"{url}/v1/chat/completions" in err and "HTTP 401" in err and "Traceback" not in err
    assert not (tmp_path / "prompts.teacher.jsonl").exists()


def test_a_bad_prompts_file_is_refused_by_line(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [PROMPTS[0], {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}])
    with prompts.open("a") as f:
        f.write("{not json\n")
    assert main(distill_args(prompts, "http://127.0.0.1:9/v1", "--no-train")) == 3
    err = capsys.readouterr().err
    assert f"{prompts}:2: messages: ends with 'assistant'" in err and f"{prompts}:3:" in err
