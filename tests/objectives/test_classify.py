"""Classification: metrics by hand, stratified few-shot sampling, a tiny run, and the saved head."""

import json

import pytest

from hone.examples import preferences
from hone.objectives.classify import classification_metrics, few_shot

from .conftest import records


def test_classification_metrics_by_hand():
    labels = ["a", "b", "c"]
    gold = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(predicted, gold, labels)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    a, b, c = (m["per_class"][k] for k in labels)
    assert (a["precision"], a["recall"]) == (1.0, pytest.approx(2 / 3))
    assert (b["precision"], b["recall"]) == (0.5, 0.5)
    assert (c["precision"], c["recall"]) == (0.5, 1.0)
    assert a["f1"] == pytest.approx(0.8) and b["f1"] == 0.5 and c["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx(2 / 3)
    assert a["support"] == 3


def test_a_class_never_predicted_scores_zero_not_nan():
    m = classification_metrics([0, 0], [0, 1], ["x", "y"])
    assert m["per_class"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_f1"] == pytest.approx((2 / 3) / 2)


def test_few_shot_takes_k_per_class_seeded():
    from hone.data.formats import Example

    examples = [Example(format="labelled", text=f"t{i}", label="ab"[i % 2] if i < 20 else "c") for i in range(23)]
    picked = few_shot(examples, 4, seed=0)
    assert sorted(e.label for e in picked) == ["a"] * 4 + ["b"] * 4 + ["c"] * 3  # c has only 3
    assert [e.text for e in few_shot(examples, 4, seed=0)] == [e.text for e in picked]
    assert [e.text for e in few_shot(examples, 4, seed=1)] != [e.text for e in picked]


@pytest.fixture(scope="module")
def label_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("labels")
    return (preferences.write_jsonl(out / "train.jsonl", preferences.delivery_labels(64, 0)),
            preferences.write_jsonl(out / "heldout.jsonl", preferences.delivery_labels(16, 1)))


def test_classifier_trains_saves_labels_and_scores(train_objective, label_files):
    from hone.api import score

    result = train_objective(*label_files, "task=classify", "train.max_steps=16", "train.batch_size=8",
                             "train.eval_every=8", "train.lr=1e-2")
    evals = records(result.run_dir, "val_accuracy")
    assert [r["step"] for r in evals] == [8, 16]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    last = evals[-1]
    assert set(last["val_per_class"]) == {"delivery", "pickup"}
    assert sum(map(sum, last["val_confusion"])) == 16
    manifest = json.loads((result.adapter_dir / "hone.json").read_text())
    assert manifest["objective"]["labels"] == ["delivery", "pickup"]
    assert (result.adapter_dir / "head.safetensors").is_file()

    scored = score(label_files[1], adapter=result.run_dir)
    assert [r["gold"] for r in scored] == [json.loads(l)["label"] for l in label_files[1].read_text().splitlines()]
    assert sum(r["label"] == r["gold"] for r in scored) / 16 == pytest.approx(last["val_accuracy"])
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in scored)


def test_few_shot_run_and_unknown_validation_label(train_objective, label_files, tmp_path):
    from hone.errors import DataError

    result = train_objective(*label_files, "objective=classify", "objective.shots=3", "train.max_steps=1",
                             name="shots")
    assert result.steps == 1
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"text": "a pizza", "label": "delivery"}) + "\n"
                   + json.dumps({"text": "a pizza to go", "label": "takeaway"}) + "\n")
    with pytest.raises(DataError, match=r"odd.jsonl:2: label: is 'takeaway'"):
        train_objective(label_files[0], odd, "objective=classify", "train.max_steps=1", name="odd")
