"""`hone grader validate|run`, `hone eval --grader` and `eval.grader` as a user meets them."""

import json
import subprocess
import sys

import pytest

from hone.cli import main
from hone.config.load import load_config
from hone.errors import ConfigError

PIZZA = '{"size": "large", "toppings": ["ham"], "delivery": true}'
MULTI = json.dumps({"type": "multi", "calculate_output": "0.5 * valid + 0.5 * fields",
                    "graders": {"valid": {"type": "json", "score": "valid"}, "fields": {"type": "json"}}})


def test_validate_prints_the_normalised_spec(capsys):
    assert main(["grader", "validate", '{"type": "numeric", "abs_tolerance": 0.1}']) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["type"] == "numeric" and printed["abs_tolerance"] == 0.1 and printed["extract"] == "last"


def test_validate_lists_every_problem_with_its_path(tmp_path, capsys):
    spec = tmp_path / "grader.yaml"
    spec.write_text("type: multi\ncalculate_output: a.__class__\ngraders:\n  a: {type: string_check, operation: eqq}\n")
    assert main(["grader", "validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: 2 problems in the grader spec" in err
    assert "graders.a.operation: Input should be" in err and "calculate_output: attribute access" in err


def test_run_on_eval_predictions_prints_a_table_and_the_mean(tmp_path, capsys):
    predictions = tmp_path / "p.jsonl"
    rows = [{"where": "heldout.jsonl:1", "messages": [{"role": "user", "content": "Large ham, delivered"}],
             "reference": PIZZA, "prediction": PIZZA},
            {"where": "heldout.jsonl:2", "messages": [{"role": "user", "content": "Same again"}],
             "reference": PIZZA, "prediction": '{"size": "large"'}]
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["grader", "run", MULTI, str(predictions)]) == 0
    out = capsys.readouterr().out
    assert "heldout.jsonl:1" in out and "invalid JSON" in out
    assert "mean score 0.5000 over 2 items (0 could not be graded)" in out
    assert main(["grader", "run", MULTI, str(predictions), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grader_score"] == 0.5 and [r["score"] for r in report["results"]] == [1.0, 0.0]


def test_run_with_items_and_samples_files(tmp_path, capsys):
    items, samples = tmp_path / "items.jsonl", tmp_path / "samples.jsonl"
    items.write_text('{"question": "6*7?", "answer": 42}\n{"question": "2+2?", "answer": 4}\n')
    samples.write_text('"It is 42."\n{"output_text": "5"}\n')
    spec = '{"type": "numeric", "reference": "{{item.answer}}"}'
    assert main(["grader", "run", spec, str(items), "--samples", str(samples), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["score"] for r in report["results"]] == [1.0, 0.0] and report["n"] == 2
    assert report["results"][0]["where"] == f"{items}:1"
    samples.write_text('"42"\n')
    assert main(["grader", "run", spec, str(items), "--samples", str(samples)]) == 3
    assert "1 samples for 2 items" in capsys.readouterr().err


def test_run_refuses_a_file_without_predictions(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text('{"question": "x"}\nnot json\n')
    assert main(["grader", "run", '{"type": "json"}', str(items)]) == 3
    assert f"{items}:2: invalid JSON" in capsys.readouterr().err


def test_grader_commands_in_a_subprocess_never_show_a_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hone", "grader", "validate", '{"type": "python"}'],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "function: Field required" in out.stderr and "Traceback" not in out.stderr


def test_eval_with_a_grader_scores_each_item_and_writes_the_grades(tmp_path, tiny_model_dir, capsys):
    from hone.examples import pizza

    _, heldout = pizza.write_dataset(tmp_path, train=2, heldout=3)
    predictions = tmp_path / "p.jsonl"
    spec = '{"type": "string_check", "operation": "ne", "reference": "{{item.prompt}}"}'
    assert main(["eval", str(heldout), "--model", str(tiny_model_dir), "--grader", spec, "--max-new-tokens", "3",
                 "--predictions", str(predictions)]) == 0
    out = capsys.readouterr().out
    assert "grader_score: 1.0000" in out and "n: 3" in out
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["grade"]["score"] for r in rows] == [1.0, 1.0, 1.0] and "ne holds" in rows[0]["grade"]["reason"]
    # the predictions file grades again with `hone grader run`
    assert main(["grader", "run", spec, str(predictions), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grader_score"] == 1.0


def test_eval_grader_in_the_run_config_is_validated_with_its_path():
    config = load_config({"eval": {"grader": {"type": "json", "score": "exact"}}})
    assert config.eval.grader.type == "json"
    with pytest.raises(ConfigError) as caught:
        load_config({"eval": {"grader": {"type": "multi", "graders": {"a": {"type": "json", "score": "most"}},
                                         "calculate_output": "a"}}})
    assert any(i.startswith("eval.grader.graders.a.score: Input should be") for i in caught.value.issues)
    with pytest.raises(ConfigError) as caught:
        load_config({"eval": {"grader": {"type": "bleu"}}})
    assert caught.value.issues[0].startswith("eval.grader: unknown type 'bleu'")


def test_a_training_run_scores_eval_file_with_eval_grader(tmp_path, tiny_model_dir):
    from hone.api import train
    from hone.examples import pizza

    train_file, heldout = pizza.write_dataset(tmp_path, train=8, heldout=2)
    grader = {"type": "multi", "calculate_output": "valid",
              "graders": {"valid": {"type": "json", "score": "valid"}}}
    result = train({"model": str(tiny_model_dir), "output_dir": str(tmp_path), "name": "graded",
                    "data": {"train": str(train_file), "max_length": 384},
                    "train": {"max_steps": 1, "threads": 1},
                    "eval": {"file": str(heldout), "grader": grader, "max_new_tokens": 4}},
                   progress=False, log=lambda *a: None)
    assert result.metrics["eval_n"] == 2
    assert result.metrics["eval_grader_score"] == sum(g.score for g in result.evaluation.grades) / 2
    assert all(g.reason for g in result.evaluation.grades)
    saved = json.loads((result.adapter_dir / "hone.json").read_text())
    assert "eval_grader_score" in json.dumps(saved)
