"""Reward model: Bradley-Terry by hand, a tiny run, and the saved head scoring like the trained one."""

import json
import math
import subprocess
import sys

import pytest
import torch

from hone.examples import preferences
from hone.objectives.reward import bradley_terry_loss

from .conftest import records


def test_bradley_terry_by_hand():
    losses = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(losses, torch.tensor([math.log(1 + math.exp(-2)), math.log(1 + math.exp(1))]))


@pytest.fixture(scope="module")
def reward_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("reward")
    return (preferences.write_jsonl(out / "train.jsonl", preferences.reward_pairs(48, 0)),
            preferences.write_jsonl(out / "heldout.jsonl", preferences.reward_pairs(12, 1)))


def test_reward_model_trains_saves_and_scores(train_objective, reward_files, tmp_path):
    result = train_objective(*reward_files, "objective=reward", "train.max_steps=12", "train.batch_size=4", "train.lr=1e-3",
                             "train.eval_every=4", "train.save_every=12")
    evals = records(result.run_dir, "val_pair_accuracy")
    assert [r["step"] for r in evals] == [4, 8, 12]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert evals[-1]["val_pair_accuracy"] > 0.5
    files = {p.name for p in result.adapter_dir.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "head.safetensors", "hone.json", "README.md"}
    manifest = json.loads((result.adapter_dir / "hone.json").read_text())
    assert manifest["objective"] == {"type": "reward", "head": "head.safetensors"}
    # The head is a trainable parameter like the adapter's: checkpoints (and so resume) carry it.
    from safetensors.torch import load_file

    from hone.train.checkpoint import latest_checkpoint

    checkpoint = load_file(latest_checkpoint(result.run_dir) / "trainable.safetensors")
    head = load_file(result.adapter_dir / "head.safetensors")
    assert torch.equal(checkpoint["hone_head.weight"], head["weight"])

    # The loaded artifact ranks the held-out pairs exactly as the last validation pass did.
    out = tmp_path / "scores.jsonl"
    done = subprocess.run([sys.executable, "-m", "hone", "score", str(result.run_dir), str(reward_files[1]),
                           "--output", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 12 and scored[0]["where"].endswith("heldout.jsonl:1")
    accuracy = sum(r["correct"] for r in scored) / len(scored)
    assert accuracy == pytest.approx(evals[-1]["val_pair_accuracy"])
    margin = sum(r["chosen_score"] - r["rejected_score"] for r in scored) / len(scored)
    assert margin == pytest.approx(evals[-1]["val_reward_margin"], abs=1e-4)

    # A single conversation ending with a reply gets one score, the same as that side of its pair.
    first = json.loads(reward_files[1].read_text().splitlines()[0])
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"messages": first["messages"] + [{"role": "assistant", "content": first["chosen"]}]})
                      + "\n")
    from hone.api import score

    [alone] = score(single, adapter=result.run_dir)
    assert alone["score"] == pytest.approx(scored[0]["chosen_score"], abs=1e-4)


def test_score_refuses_an_sft_run_and_wrong_records(train_objective, pizza_files, reward_files):
    from hone.api import score
    from hone.errors import DataError, HoneError

    sft = train_objective(*pizza_files, "train.max_steps=1", name="sft")
    with pytest.raises(HoneError, match="objective 'sft'"):
        score(reward_files[1], adapter=sft.run_dir)
