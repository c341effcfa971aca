"""Early stopping stops, the artifact comes from the best evaluation, L2-SP pulls toward the base."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hone.train.overfit import EarlyStopping, GapMonitor
from hone.train.regularize import L2SP


def test_early_stopping_by_hand():
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.01)
    assert stopper.update(1, 2.0) and not stopper.should_stop
    assert not stopper.update(2, 1.995)  # better, but by less than min_delta
    assert stopper.update(3, 1.5)
    assert not stopper.update(4, 1.6) and not stopper.should_stop
    assert not stopper.update(5, 1.7) and stopper.should_stop
    assert (stopper.best, stopper.best_step) == (1.5, 3)
    accuracy = EarlyStopping("field_accuracy", patience=1)
    assert accuracy.update(1, 0.5) and accuracy.update(2, 0.6) and not accuracy.update(3, 0.55)
    assert accuracy.should_stop


def test_gap_monitor_warns_once_when_val_rises_and_the_gap_widens():
    monitor = GapMonitor(streak=2)
    assert monitor.update(2.0, 2.1) is None
    assert monitor.update(1.5, 1.8) is None
    assert monitor.update(1.2, 1.9) is None  # one rise only
    assert "overfitting" in monitor.update(1.0, 2.0)
    assert monitor.update(0.8, 2.5) is None  # once


def test_training_stops_early_and_keeps_the_best_checkpoint(train_tiny):
    # min_delta is unreachable: the first evaluation stays the best, two more end the run.
    result = train_tiny("train.max_steps=30", "train.eval_every=2", "train.batch_size=4",
                        "train.early_stopping.patience=2", "train.early_stopping.min_delta=100", "train.save_every=30")
    steps = [r["step"] for r in map(json.loads, open(result.run_dir / "metrics.jsonl")) if "loss" in r]
    assert steps[-1] == 6 and result.steps == 6
    assert result.metrics["stopped_early_at"] == 6 and result.metrics["best_step"] == 2
    best = load_file(result.run_dir / "checkpoints" / "best" / "trainable.safetensors")
    last = load_file(result.run_dir / "checkpoints" / "step-6" / "trainable.safetensors")
    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    lora_b = sorted(n for n in best if "lora_B" in n)[0]
    saved = [t for n, t in adapter.items() if lora_b.split("base_model.model.")[-1].replace(".default", "") in n][0]
    assert torch.equal(saved, best[lora_b]) and not torch.equal(saved, last[lora_b])


def test_early_stopping_needs_evaluations(train_tiny):
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_every"):
        train_tiny("train.max_steps=2", "train.early_stopping.patience=2")


def test_l2sp_gradient_matches_autograd_and_pulls_toward_the_base(tiny_tokenizer):
    from hone.models.tiny import tiny_model

    model = tiny_model(tiny_tokenizer)
    base_ids = {id(p) for p in model.parameters()}
    model.requires_grad_(False)
    layer = model.model.layers[0].mlp.down_proj.weight
    layer.requires_grad_(True)  # a tiny "full tuning" of one matrix
    extra = torch.nn.Parameter(torch.ones(3))  # a new parameter (like LoRA's): no base value
    reg = L2SP.from_model(model, base_ids, alpha=0.5)
    assert list(reg.params) == ["model.layers.0.mlp.down_proj.weight"] and extra is not None
    with torch.no_grad():
        layer.add_(0.1)
    expected = 0.5 / 2 * (0.1 ** 2) * layer.numel()
    assert reg.penalty().item() == pytest.approx(expected, rel=1e-4)
    reference = torch.autograd.grad(reg.penalty(), layer)[0]
    assert reg.add_gradient() == pytest.approx(expected, rel=1e-4)
    torch.testing.assert_close(layer.grad, reference)
    distance = (layer - reg.base[next(iter(reg.params))]).norm()
    torch.optim.SGD([layer], lr=1.0).step()
    assert (layer - reg.base[next(iter(reg.params))]).norm() < distance


def test_replay_makes_up_its_fraction_of_the_training_examples(tiny_tokenizer, pizza_files):
    from hone.config.load import load_config
    from hone.data.prepare import prepare_data

    config = load_config(None, [f"data.train={pizza_files[0]}", "data.replay=0.25", "data.validation_fraction=0"])
    data = prepare_data(config.data, tiny_tokenizer, seed=0)
    replayed = [e for e in data.train if e.where.startswith("replay:")]
    assert len(data.train) == 40 + len(replayed) and len(replayed) == round(40 * 0.25 / 0.75)
    assert any("replay: 13" in note for note in data.notes)


def test_l2sp_and_replay_in_a_run(train_tiny):
    result = train_tiny("train.max_steps=2", "train.l2sp=0.1", "data.replay=0.25", "train.batch_size=4")
    records = [r for r in map(json.loads, open(result.run_dir / "metrics.jsonl")) if "loss" in r]
    assert all(r["l2sp"] == 0.0 for r in records)  # LoRA adds new weights only: nothing has a base value


def test_early_stopping_on_a_task_metric_scores_validation_answers(train_tiny):
    from hone.errors import ConfigError

    result = train_tiny("train.max_steps=4", "train.eval_every=2", "train.batch_size=4", "eval.metric=json",
                        "eval.max_new_tokens=4", "train.early_stopping.metric=field_accuracy",
                        "train.early_stopping.max_items=2", "train.early_stopping.patience=5", name="task")
    evals = [r for r in map(json.loads, open(result.run_dir / "metrics.jsonl")) if "val_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0.0 <= r["val_field_accuracy"] <= 1.0 for r in evals) and evals[0]["best"]
    assert result.metrics["best_step"] == 2  # a random tiny model scores 0 twice: no improvement after the first
    with pytest.raises(ConfigError, match="field_acuracy"):
        train_tiny("train.max_steps=2", "train.eval_every=1", "eval.metric=json",
                   "train.early_stopping.metric=field_acuracy", name="typo")
