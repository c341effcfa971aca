"""Every objective declares its kind and subclasses the Objective base; the optional hooks have defaults
that leave the model and the run alone, and DPO's `begin` follows the method's adapter trait."""

import dataclasses

import pytest
import torch

from hone.config.schema import DataConfig
from hone.data.batching import Batching
from hone.methods import METHODS
from hone.objectives import OBJECTIVES, build_objective
from hone.objectives.base import Objective, ObjectiveKind

SETTINGS = {"grpo": {"grader": {"type": "exact_match"}}, "distill": {"teacher": "runs/teacher"}}


def test_every_registered_objective_declares_its_kind_and_builds_an_objective():
    for name, kind in OBJECTIVES.items():
        assert isinstance(kind, ObjectiveKind) and kind.name == name
        config = kind.Config(**SETTINGS.get(name, {}))
        assert config.type == name
        objective = build_objective(config)
        assert isinstance(objective, Objective) and objective.name == name


def test_the_default_hooks_leave_the_model_alone(tmp_path):
    model = torch.nn.Linear(2, 2)
    objective = build_objective(OBJECTIVES["sft"].Config())
    before = {n: p.clone() for n, p in model.state_dict().items()}
    assert objective.attach(model, None) is model and objective.manifest(None) == {}
    objective.begin(model, None, Batching(0), METHODS["full"])
    objective.accumulate(2)
    objective.save(model, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


@pytest.fixture(scope="module")
def dpo_pairs(tiny_tokenizer, preference_files):
    objective = build_objective(OBJECTIVES["dpo"].Config())
    return objective.prepare(DataConfig(train=str(preference_files[0]), validation_fraction=0, max_length=384),
                             tiny_tokenizer, seed=0).train[:4]


@pytest.mark.parametrize("method, scored", [("lora", False), ("full", True), ("adapters", True)])
def test_dpo_scores_its_reference_before_training_only_without_an_adapter(tiny_tokenizer, dpo_pairs, method, scored):
    import copy

    from hone.data.prepare import PreparedData
    from hone.models.tiny import tiny_model

    data = PreparedData(copy.deepcopy(dpo_pairs), [])
    objective = build_objective(OBJECTIVES["dpo"].Config())
    objective.begin(tiny_model(tiny_tokenizer), data, Batching(tiny_tokenizer.pad_token_id), METHODS[method])
    assert all((pair.reference is not None) == scored for pair in data.train)


@pytest.mark.parametrize("method, scored", [("lora", False), ("full", True)])
def test_kto_stores_both_sequences_reference_only_without_an_adapter(tiny_tokenizer, preference_files, method,
                                                                     scored):
    from hone.models.tiny import tiny_model

    objective = build_objective(OBJECTIVES["kto"].Config())
    data = objective.prepare(DataConfig(train=str(preference_files[0]), validation_fraction=0, max_length=384),
                             tiny_tokenizer, seed=0)
    data.train = data.train[:4]
    objective.begin(tiny_model(tiny_tokenizer), data, Batching(tiny_tokenizer.pad_token_id), METHODS[method])
    assert all((unit.reference is not None) == scored for unit in data.train)
    if scored:  # the completion's and its mismatched KL sample's summed log-probs
        assert all(len(unit.reference) == 2 and unit.reference[0] != unit.reference[1] for unit in data.train)


def test_batching_carries_the_run_settings_and_is_frozen():
    batching = Batching.for_run(DataConfig(max_length=64, packing=False), 7, True)
    assert batching == Batching(pad_id=7, max_length=64, packing=False, segmented=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        batching.pad_id = 0
