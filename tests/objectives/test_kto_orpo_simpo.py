"""KTO, ORPO and SimPO: each loss by hand from its paper's formula, against TRL's code on the same
log-probs, and a tiny model trained a few steps."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from hone.objectives.kto import kto_loss
from hone.objectives.orpo import orpo_loss
from hone.objectives.simpo import simpo_loss

from .conftest import records


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_kto_loss_by_hand():
    # r = policy - reference = [1, -1]; KL samples' log-ratios [1, 0] -> z0 = 0.5.
    policy, reference = torch.tensor([-1.0, -3.0], requires_grad=True), torch.tensor([-2.0, -2.0])
    policy_kl = torch.tensor([-2.0, -4.0], requires_grad=True)
    reference_kl = torch.tensor([-3.0, -4.0])
    desirable = torch.tensor([True, False])
    losses, rewards, z0 = kto_loss(policy, reference, policy_kl, reference_kl, desirable, 0.5, 1.0, 2.0)
    assert z0.item() == pytest.approx(0.5)
    # desirable: lambda_D (1 - sigmoid(beta (r - z0))); undesirable: lambda_U (1 - sigmoid(beta (z0 - r)))
    expected = [1.0 * (1 - sigmoid(0.5 * (1 - 0.5))), 2.0 * (1 - sigmoid(0.5 * (0.5 + 1)))]
    torch.testing.assert_close(losses, torch.tensor(expected))
    torch.testing.assert_close(rewards, torch.tensor([0.5, -0.5]))
    losses.sum().backward()
    assert policy_kl.grad is None or not policy_kl.grad.any()  # z0 is not back-propagated
    assert policy.grad[0] < 0 < policy.grad[1]  # raise the good completion, lower the bad one


def test_kto_reference_point_is_clamped_at_zero():
    _, _, z0 = kto_loss(torch.zeros(2), torch.zeros(2), torch.tensor([-5.0, -5.0]), torch.tensor([-1.0, -2.0]),
                        torch.tensor([True, True]), 0.1)
    assert z0.item() == 0.0


def _trl_kto(beta, weights, policy, reference, policy_kl, reference_kl, desirable):
    """TRL's KTOTrainer._compute_loss itself, on given summed log-probs (reference precomputed, TRL's option)."""
    from trl import KTOTrainer

    rows, length = len(policy), 4

    def per_token(sums):
        out = torch.zeros(rows, length - 1, dtype=torch.float64)
        out[:, -1] = sums
        return out

    class Policy:
        training = True

        def __call__(self, input_ids, **kwargs):
            sums = policy_kl if input_ids[0, 0] == 2 else policy  # KL_input_ids are 2s, input_ids 1s
            zeros = torch.zeros(rows, length - 1, dtype=torch.float64)
            return SimpleNamespace(log_probs=per_token(sums), entropy=zeros, mean_logits=zeros)

    identity = SimpleNamespace(device="cpu", gather_for_metrics=lambda t: t)
    fake = SimpleNamespace(model=Policy(), accelerator=identity, aux_loss_enabled=False, calculate_KL=True,
                           precompute_ref_logps=True, loss_type="kto", beta=beta, desirable_weight=weights[0],
                           undesirable_weight=weights[1], _metrics=defaultdict(lambda: defaultdict(list)),
                           _total_train_tokens=0, _tp_size=1)
    fake._compute_kl_logps = lambda model, batch: KTOTrainer._compute_kl_logps(fake, model, batch)
    ones = torch.ones(rows, length, dtype=torch.long)
    inputs = {"input_ids": ones, "attention_mask": ones, "completion_mask": ones, "KL_input_ids": 2 * ones,
              "KL_attention_mask": ones, "KL_completion_mask": ones, "label": desirable.long(),
              "ref_logps": reference, "ref_KL_logps": reference_kl}
    loss = KTOTrainer._compute_loss(fake, fake.model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in fake._metrics["train"].items()}


def test_kto_loss_matches_trl():
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(0)
    policy, reference, policy_kl, reference_kl = (-torch.rand(8, generator=g, dtype=torch.float64) * 20
                                                  for _ in range(4))
    reference_kl = policy_kl - torch.rand(8, generator=g, dtype=torch.float64)  # a positive KL estimate
    desirable = torch.tensor([True, False, True, True, False, False, True, False])
    trl_loss, metrics = _trl_kto(0.3, (1.0, 1.5), policy, reference, policy_kl, reference_kl, desirable)
    losses, rewards, z0 = kto_loss(policy, reference, policy_kl, reference_kl, desirable, 0.3, 1.0, 1.5)
    assert losses.mean().item() == pytest.approx(trl_loss.item(), abs=1e-9)
    assert z0.item() == pytest.approx(metrics["kl"], abs=1e-9)
    assert rewards[desirable].mean().item() == pytest.approx(metrics["rewards/chosen"], abs=1e-9)
    assert rewards[~desirable].mean().item() == pytest.approx(metrics["rewards/rejected"], abs=1e-9)


def test_orpo_loss_by_hand():
    # Mean token log-probs log P: chosen log 0.5, rejected log 0.25.
    # odds: 0.5/0.5 = 1, 0.25/0.75 = 1/3 -> log odds ratio = log 3; loss = -log 0.5 - 0.2 log sigmoid(log 3)
    chosen, rejected = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    losses, log_odds = orpo_loss(chosen, rejected, 0.2)
    assert log_odds.item() == pytest.approx(math.log(3))
    assert losses.item() == pytest.approx(math.log(2) - 0.2 * math.log(0.75))  # sigmoid(log 3) = 3/4
    # Far below zero and near it, log(1 - e^x) stays finite.
    # log odds = (x_w - x_l) - (log(1 - e^x_w) - log(1 - e^x_l)) = 80 - log(1e-7) + O(1e-7)
    losses, log_odds = orpo_loss(torch.tensor([-1e-7], dtype=torch.float64), torch.tensor([-80.0], dtype=torch.float64), 1.0)
    assert torch.isfinite(losses).all() and log_odds.item() == pytest.approx(80 - math.log(1e-7), rel=1e-6)


def test_orpo_loss_matches_trl():
    pytest.importorskip("trl")
    from trl.experimental.orpo import ORPOTrainer

    g = torch.Generator().manual_seed(1)
    chosen, rejected = (-torch.rand(6, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    fake = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device="cpu"))
    trl_terms, *_ = ORPOTrainer.odds_ratio_loss(fake, chosen, rejected)
    losses, _ = orpo_loss(chosen, rejected, 0.25)
    # TRL's trainer loss is the chosen NLL minus the mean of these terms.
    torch.testing.assert_close(losses, -chosen - trl_terms)


def test_simpo_loss_by_hand():
    # Mean log-probs -1 and -2, beta 2, gamma 1: -log sigmoid(2 * -1 - 2 * -2 - 1) = -log sigmoid(1).
    losses, chosen, rejected = simpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]), 2.0, 1.0)
    torch.testing.assert_close(losses, torch.tensor([math.log(1 + math.exp(-1)), math.log(1 + math.exp(3))]))
    torch.testing.assert_close(chosen, torch.tensor([-2.0, -4.0]))
    torch.testing.assert_close(rejected, torch.tensor([-4.0, -2.0]))


def test_simpo_loss_matches_trl():
    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer

    g = torch.Generator().manual_seed(2)
    chosen, rejected = (-torch.rand(6, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    fake = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=0.8, beta=2.5, label_smoothing=0.0,
                           accelerator=SimpleNamespace(device="cpu"))
    trl_losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(fake, chosen, rejected)
    losses, ours_chosen, ours_rejected = simpo_loss(chosen, rejected, 2.5, 0.8)
    torch.testing.assert_close(losses, trl_losses)
    torch.testing.assert_close(ours_chosen, trl_chosen)
    torch.testing.assert_close(ours_rejected, trl_rejected)


@pytest.fixture(scope="module")
def judged_files(tmp_path_factory):
    """Unpaired judged completions: 32 train (half concise and desirable, half chatty) and 8 held out."""
    from hone.examples import preferences

    out = tmp_path_factory.mktemp("judged")
    return (preferences.write_jsonl(out / "train.jsonl", preferences.judged_completions(32, 0)),
            preferences.write_jsonl(out / "heldout.jsonl", preferences.judged_completions(8, 1)))


def _trains(result, margin_key, start_loss=None):
    evals = records(result.run_dir, f"val_{margin_key}")
    assert evals[-1][f"val_{margin_key}"] > evals[0][f"val_{margin_key}"]
    steps = records(result.run_dir, "loss")
    if start_loss is not None:
        assert steps[0]["loss"] == pytest.approx(start_loss, abs=1e-3)
    assert min(r["loss"] for r in steps[-3:]) < steps[0]["loss"]
    return steps


def _adapter_trained(result, tiny_model_dir):
    from safetensors.torch import load_file

    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all("lora_" in n for n in saved) and any(t.abs().sum() > 0 for n, t in saved.items() if "lora_B" in n)


def test_kto_trains_unpaired_completions_apart(train_objective, judged_files, tiny_model_dir):
    result = train_objective(*judged_files, "objective=kto", "objective.beta=0.5", "train.max_steps=8",
                             "train.batch_size=4", "train.eval_every=4")
    steps = _trains(result, "reward_margin", start_loss=0.5)  # policy == reference: 1 - sigmoid(0) for each
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-4) and steps[-1]["kl"] >= 0
    assert records(result.run_dir, "val_reward_margin")[-1]["val_reward_margin"] > 0
    _adapter_trained(result, tiny_model_dir)


def test_kto_takes_preference_pairs_as_judged_completions(train_objective, preference_files):
    """Each pair gives a desirable and an undesirable completion; a full fine-tune scores its reference first."""
    result = train_objective(*preference_files, "method=full", "objective=kto", "objective.beta=0.5",
                             "train.max_steps=6", "train.batch_size=4", "train.eval_every=3", "train.lr=1e-3")
    steps = _trains(result, "reward_margin", start_loss=0.5)
    assert steps[0]["rewards_desirable"] == pytest.approx(0.0, abs=1e-4)  # the stored reference is the start model
    assert records(result.run_dir, "val_reward_margin")[-1]["val_reward_margin"] > 0


@pytest.mark.parametrize("objective", ["orpo", "simpo"])
def test_reference_free_objectives_train_pairs_apart(train_objective, preference_files, tiny_model_dir, objective):
    result = train_objective(*preference_files, f"objective={objective}", "train.max_steps=8", "train.batch_size=4",
                             "train.eval_every=4")
    _trains(result, "reward_margin")
    assert records(result.run_dir, "val_pair_accuracy")[-1]["val_pair_accuracy"] >= 0.75
    _adapter_trained(result, tiny_model_dir)


def test_judged_records_parse_and_refuse_a_label_that_is_not_a_boolean(tmp_path, tiny_tokenizer):
    from hone.data.config import DataConfig
    from hone.data.formats import RecordError, parse_record
    from hone.data.judged import prepare_judged

    example = parse_record({"prompt": "Order?", "completion": "{}", "label": False})
    assert (example.format, example.desirable, example.completion[0]["content"]) == ("judged", False, "{}")
    with pytest.raises(RecordError, match="label: is a string; expected true"):
        parse_record({"prompt": "Order?", "completion": "{}", "label": "good"})
    assert parse_record({"text": "hi", "label": "good"}).format == "labelled"  # no completion: classification

    path = tmp_path / "judged.jsonl"
    path.write_text('{"prompt": "a", "completion": "yes", "label": true}\n'
                    '{"prompt": "b", "completion": "no", "label": false}\n'
                    '{"prompt": "c", "chosen": "x", "rejected": "y"}\n')
    data = prepare_judged(DataConfig(train=str(path), validation_fraction=0), tiny_tokenizer, seed=0, objective="kto")
    assert [u.desirable for u in sorted(data.train, key=lambda u: u.where)] == [True, False, True, False]
    for unit in data.train:  # the KL sample: this unit's prompt, another prompt's reply
        cut = next(i for i, t in enumerate(unit.completion.labels) if t != -100)
        assert unit.mismatched.input_ids[:cut] == unit.completion.input_ids[:cut]
        assert unit.mismatched.input_ids[cut:] != unit.completion.input_ids[cut:]
        assert any(t != -100 for t in unit.mismatched.labels)


@pytest.mark.parametrize("method", ["lora", "full", "layers", "qlora", "ia3"])
@pytest.mark.parametrize("objective", ["kto", "orpo", "simpo"])
def test_preference_objectives_work_with_every_method(method, objective):
    """KTO's reference is the adapter switched off or the stored start model; ORPO and SimPO need none."""
    from hone.config.load import load_config

    assert load_config(None, [f"method={method}", f"objective={objective}"]).objective.type == objective


def test_preference_objective_options_are_checked():
    from hone.config.load import load_config
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="objective.beta"):
        load_config(None, ["objective=kto", "objective.beta=0"])
    with pytest.raises(ConfigError, match="objective.gamma"):
        load_config(None, ["objective=simpo", "objective.gamma=-1"])
    with pytest.raises(ConfigError, match="objective.beta"):
        load_config(None, ["objective=orpo", "objective.beta=0"])
