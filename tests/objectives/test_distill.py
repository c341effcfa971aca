"""Distillation: the generalised JSD by hand and against TRL's, on-policy from a hone teacher, and
sequence-level from hone's own server as an OpenAI-compatible teacher (and from a teacher with
another tokenizer)."""

import json
import math

import pytest
import torch

from hone.objectives.distill import generalized_jsd

from .conftest import records


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_generalized_jsd_by_hand():
    # Student uniform over 2 tokens, teacher (0.8, 0.2).
    s, t = [0.5, 0.5], [0.8, 0.2]
    student, teacher = torch.log(torch.tensor([s])), torch.log(torch.tensor([t]))
    m = [0.5 * a + 0.5 * b for a, b in zip(t, s)]  # beta 0.5: (0.65, 0.35)
    assert generalized_jsd(student, teacher, 0.5).item() == pytest.approx(0.5 * kl(t, m) + 0.5 * kl(s, m), abs=1e-6)
    m = [0.25 * a + 0.75 * b for a, b in zip(t, s)]
    assert generalized_jsd(student, teacher, 0.25).item() == pytest.approx(0.25 * kl(t, m) + 0.75 * kl(s, m), abs=1e-6)
    assert generalized_jsd(student, teacher, 0.0).item() == pytest.approx(kl(t, s), abs=1e-6)  # forward KL
    assert generalized_jsd(student, teacher, 1.0).item() == pytest.approx(kl(s, t), abs=1e-6)  # reverse KL
    assert generalized_jsd(teacher, teacher, 0.5).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_generalized_jsd_matches_trl(beta):
    pytest.importorskip("trl")
    from trl.experimental.gkd import GKDTrainer

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g) * 2
    trl = GKDTrainer.generalized_jsd_loss(student, teacher, beta=beta, reduction="none").sum(-1)
    torch.testing.assert_close(generalized_jsd(student.view(-1, 11), teacher.view(-1, 11), beta), trl.view(-1))


ANSWER = "cat dog cow"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, sharp_model_dir):
    """A LoRA run that answers every 'Name animal' prompt with the same reply, and the prompt files."""
    from hone.api import train

    out = tmp_path_factory.mktemp("distill")
    lines = [json.dumps({"prompt": f"Name animal {i}", "completion": ANSWER}) for i in range(24)]
    (out / "train.jsonl").write_text("\n".join(lines[:16]) + "\n")
    (out / "val.jsonl").write_text("\n".join(lines[16:]) + "\n")
    run = train(None, [f"model={sharp_model_dir}", f"data.train={out / 'train.jsonl'}", "data.validation_fraction=0",
                       f"output_dir={out}", "name=teacher", "train.lr=5e-3", "train.threads=1", "train.max_steps=40",
                       "train.batch_size=4"], progress=False, log=lambda *a: None).run_dir
    return run, out / "train.jsonl", out / "val.jsonl"


def _answer_nll(adapter_or_model, items):
    from hone.evaluate.perplexity import example_nll, reference_example
    from hone.methods.tuned import load_tuned
    from hone.models.load import load_model

    model, tokenizer = (load_tuned(adapter_or_model) if (adapter_or_model / "adapter").exists()
                        else load_model(str(adapter_or_model)))[:2]
    nll = example_nll(model, tokenizer, [reference_example([{"role": "user", "content": f"Name animal {i}"}], ANSWER)
                                         for i in items])
    return sum(s for s, _ in nll) / sum(n for _, n in nll)


def test_on_policy_distillation_pulls_the_student_to_the_teacher(teacher, sharp_model_dir, tmp_path):
    from hone.api import train

    run, train_file, val_file = teacher
    said = []
    result = train(None, [f"model={sharp_model_dir}", f"data.train={train_file}", f"data.validation={val_file}",
                          f"output_dir={tmp_path}", "name=student", "objective=distill", f"objective.teacher={run}",
                          "objective.max_new_tokens=8", "train.lr=1e-2", "train.threads=1", "train.max_steps=12",
                          "train.batch_size=4", "train.eval_every=6"], progress=False, log=said.append)
    assert any("on-policy distillation from" in str(line) for line in said)
    evals = records(result.run_dir, "val_loss")
    assert [r["step"] for r in evals] == [6, 12]
    steps = records(result.run_dir, "loss")
    assert min(r["loss"] for r in steps[-3:]) < steps[0]["loss"] * 0.8  # the JSD to the teacher falls
    assert all(0 < r["reply_length"] <= 8 for r in steps)
    held_out = range(16, 24)
    base, taught, teacher_nll = (_answer_nll(sharp_model_dir, held_out), _answer_nll(result.run_dir, held_out),
                                 _answer_nll(run, held_out))
    assert taught < base - 0.3 * (base - teacher_nll), (base, taught, teacher_nll)  # it learnt the teacher's reply


def test_sequence_distillation_from_hone_server_as_an_endpoint(teacher, sharp_model_dir, tmp_path):
    from hone.api import train
    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    run, train_file, val_file = teacher
    settings = ServeSettings(model=str(sharp_model_dir), adapters={"teacher": str(run)},
                             keys_file=str(tmp_path / "no-keys.json"), feedback_file=str(tmp_path / "f.jsonl"),
                             request_log=str(tmp_path / "r.jsonl"), max_tokens=64)
    said = []
    with running_server(create_app(settings)) as url:
        result = train(None, [f"model={sharp_model_dir}", f"data.train={train_file}", f"data.validation={val_file}",
                              f"output_dir={tmp_path}", "name=student", "objective=distill",
                              f"objective.teacher={url}/v1", "objective.teacher_model=teacher",
                              "objective.temperature=0", "objective.max_new_tokens=12", "train.lr=5e-3",
                              "train.threads=1", "train.max_steps=12", "train.batch_size=4", "train.eval_every=12"],
                       progress=False, log=said.append)
    text = "\n".join(map(str, said))
    assert f"24 teacher answers from {url}/v1 (teacher)" in text
    steps = records(result.run_dir, "loss")
    assert min(r["loss"] for r in steps[-3:]) < steps[0]["loss"]
    assert "val_ppl" in records(result.run_dir, "val_loss")[-1]


def test_a_teacher_with_another_tokenizer_is_taught_at_the_sequence_level(sharp_model_dir, teacher, tmp_path):
    from transformers import AutoTokenizer

    from hone.config.load import load_config
    from hone.errors import ConfigError
    from hone.models.load import load_tokenizer
    from hone.objectives import build_objective

    other = tmp_path / "other-tokenizer"
    import shutil

    shutil.copytree(sharp_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<only-the-teacher-has-this>"])
    tokenizer.save_pretrained(other)
    _, train_file, _ = teacher
    config = load_config(None, [f"data.train={train_file}", "data.validation_fraction=0", "objective=distill",
                                f"objective.teacher={other}", "objective.max_new_tokens=4"])
    objective = build_objective(config.objective)
    data = objective.prepare(config.data, load_tokenizer(str(sharp_model_dir)), seed=0)
    assert objective.mode == "sequence"
    assert "has another tokenizer than the student: distilling on its answers (sequence level)" in data.summary()
    assert len(data.train) == 16 and all(any(t != -100 for t in e.labels) for e in data.train)
    config.objective.mode = "on_policy"
    with pytest.raises(ConfigError, match="another tokenizer than the student"):
        build_objective(config.objective).prepare(config.data, load_tokenizer(str(sharp_model_dir)), seed=0)


def test_distill_config_refuses_an_endpoint_on_policy():
    from hone.config.load import load_config
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="an endpoint returns text"):
        load_config(None, ["objective=distill", "objective.teacher=http://127.0.0.1:9/v1", "objective.mode=on_policy",
                           "objective.teacher_model=x"])
    with pytest.raises(ConfigError, match="needs objective.teacher_model"):
        load_config(None, ["objective=distill", "objective.teacher=http://127.0.0.1:9/v1"])
