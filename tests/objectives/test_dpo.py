"""DPO: the loss by hand, against TRL's own code, packed log-probs, and a tiny model trained a few steps."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from hone.objectives.dpo import dpo_loss

from .conftest import records

# Two pairs; summed reply log-probs. Pair 0: log-ratios +1 (chosen) and -1 (rejected), d = 2.
# Pair 1: log-ratios -0.5 and +0.5, d = -1. beta = 0.5, so beta * d = 1 and -0.5.
PC, PR = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0])
RC, RR = torch.tensor([-2.0, -1.5]), torch.tensor([-2.0, -2.5])


@pytest.mark.parametrize("variant, smoothing, expected", [
    ("sigmoid", 0.0, [0.31326168751822286, 0.9740769841801067]),  # log(1 + e^-1), log(1 + e^0.5)
    ("sigmoid", 0.1, [0.4132616875182229, 0.9 * 0.9740769841801067 + 0.1 * 0.4740769841801067]),
    ("ipo", 0.0, [1.0, 4.0]),  # (2 - 1/(2*0.5))^2, (-1 - 1)^2
    ("hinge", 0.0, [0.0, 1.5]),  # max(0, 1 - 1), max(0, 1 + 0.5)
])
def test_dpo_loss_by_hand(variant, smoothing, expected):
    losses, chosen, rejected = dpo_loss(PC, PR, RC, RR, 0.5, variant, smoothing)
    torch.testing.assert_close(losses, torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(chosen, torch.tensor([0.5, -0.25]))  # beta * (policy - reference)
    torch.testing.assert_close(rejected, torch.tensor([-0.5, 0.25]))


def _trl_loss(variant, beta, policy_chosen, policy_rejected, ref_chosen, ref_rejected, completion_mask):
    """Run TRL's DPOTrainer._compute_loss itself on given per-sequence log-probs.

    TRL sums a (2B, L-1) per-token log-prob tensor that its fused head returns; we hand it one whose
    rows sum to the given values, with the reference log-probs precomputed (TRL's own option).
    """
    from trl import DPOTrainer

    rows = 2 * len(policy_chosen)
    length = completion_mask.shape[1]
    per_token = torch.zeros(rows, length - 1, dtype=torch.float64)
    per_token[:, -1] = torch.cat([policy_chosen, policy_rejected])

    class Policy:
        training = True

        def __call__(self, **kwargs):
            zeros = torch.zeros(rows, length - 1, dtype=torch.float64)
            return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    identity = SimpleNamespace(device="cpu", gather_for_metrics=lambda t: t, gather=lambda t: t)
    fake = SimpleNamespace(model=Policy(), accelerator=identity, aux_loss_enabled=False, ld_alpha=None,
                           precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[variant],
                           loss_weights=[1.0], beta=beta, label_smoothing=0.0, use_weighting=False,
                           _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.ones(rows, length, dtype=torch.long), "attention_mask": torch.ones(rows, length),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    loss = DPOTrainer._compute_loss(fake, fake.model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in fake._metrics["train"].items()}


@pytest.mark.parametrize("variant", ["sigmoid", "ipo", "hinge"])
def test_dpo_loss_matches_trl(variant):
    """The same numbers TRL's DPOTrainer computes on identical log-probs, to 1e-5.

    TRL's IPO averages the log-ratios over each reply's tokens; hone's DPO objective does the same
    by passing per-token means, so here the inputs are divided by the reply lengths first.
    """
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(0)
    b, length, beta = 6, 12, 0.3
    pc, pr, rc, rr = (-torch.rand(b, generator=g, dtype=torch.float64) * 20 for _ in range(4))
    lengths = torch.randint(2, length, (2 * b,), generator=g)
    mask = (torch.arange(length)[None, :] >= length - lengths[:, None]).long()
    trl_loss, trl_metrics = _trl_loss(variant, beta, pc, pr, rc, rr, mask)

    scale = lengths.double() if variant == "ipo" else torch.ones(2 * b, dtype=torch.float64)
    losses, _, _ = dpo_loss(pc / scale[:b], pr / scale[b:], rc / scale[:b], rr / scale[b:], beta, variant)
    assert losses.mean().item() == pytest.approx(trl_loss.item(), abs=1e-5)
    _, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta, variant)
    assert chosen.mean().item() == pytest.approx(trl_metrics["rewards/chosen"], abs=1e-5)
    assert rejected.mean().item() == pytest.approx(trl_metrics["rewards/rejected"], abs=1e-5)
    assert (chosen - rejected).mean().item() == pytest.approx(trl_metrics["rewards/margins"], abs=1e-5)
    assert (chosen > rejected).double().mean().item() == pytest.approx(trl_metrics["rewards/accuracies"])


def test_label_smoothing_matches_conservative_dpo_formula():
    """TRL 1.16 dropped label smoothing from its sigmoid loss, so this checks TRL's earlier formula
    (`-logsigmoid(beta*d)*(1-ls) - logsigmoid(-beta*d)*ls`, DPOTrainer.dpo_loss up to 0.x), written out."""
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (-torch.rand(5, generator=g, dtype=torch.float64) * 10 for _ in range(4))
    d = (pc - rc) - (pr - rr)
    beta, ls = 0.2, 0.15
    expected = -torch.nn.functional.logsigmoid(beta * d) * (1 - ls) - torch.nn.functional.logsigmoid(-beta * d) * ls
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, beta, "sigmoid", ls)[0], expected)


@pytest.mark.parametrize("segmented", [True, False])
def test_packed_pair_log_probs_equal_each_sequence_alone(tiny_tokenizer, preference_files, segmented):
    from hone.data.batching import Batching
    from hone.data.config import DataConfig
    from hone.data.pairs import collate_pairs, prepare_pairs
    from hone.models.attention import use_segment_attention
    from hone.models.tiny import tiny_model
    from hone.objectives.dpo import sequence_log_probs

    data = prepare_pairs(DataConfig(train=str(preference_files[0]), validation_fraction=0), tiny_tokenizer,
                         seed=0, objective="dpo")
    model = tiny_model(tiny_tokenizer)
    if segmented:
        assert use_segment_attention(model)
    pairs = data.train[:3]
    batch = collate_pairs(pairs, Batching.for_run(DataConfig(), tiny_tokenizer.pad_token_id, segmented))
    rows = batch["last"][:, 0]
    assert torch.equal(rows[0::2], rows[1::2])  # both sides of a pair share a row
    assert batch["input_ids"].shape[0] == 1 if segmented else batch["input_ids"].shape[0] < 6
    with torch.no_grad():
        sums, counts = sequence_log_probs(model, batch, chunk_tokens=7)
        for n, side in enumerate(s for p in pairs for s in (p.chosen, p.rejected)):
            logits = model(torch.tensor([side.input_ids])).logits[0, :-1]
            labels = torch.tensor(side.labels[1:])
            keep = labels != -100
            alone = torch.log_softmax(logits, -1)[keep].gather(1, labels[keep][:, None]).sum()
            assert sums[n].item() == pytest.approx(alone.item(), rel=1e-6)
            assert counts[n].item() == keep.sum().item()


def test_dpo_trains_pairs_apart_and_keeps_the_base_frozen(train_objective, preference_files, tiny_model_dir):
    from safetensors.torch import load_file

    result = train_objective(*preference_files, "objective=dpo", "objective.beta=0.5", "train.max_steps=8",
                             "train.batch_size=4", "train.eval_every=2")
    evals = records(result.run_dir, "val_reward_margin")
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
    assert evals[-1]["val_reward_margin"] > evals[0]["val_reward_margin"] > 0
    assert evals[-1]["val_pair_accuracy"] >= evals[0]["val_pair_accuracy"]
    assert evals[-1]["val_pair_accuracy"] >= 0.75
    steps = records(result.run_dir, "loss")
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start: log 2
    assert min(r["loss"] for r in steps[-3:]) < steps[0]["loss"]
    assert {p.name for p in result.adapter_dir.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                              "hone.json", "README.md"}
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all("lora_" in n for n in saved) and any(t.abs().sum() > 0 for n, t in saved.items() if "lora_B" in n)


@pytest.mark.parametrize("method", [["method=full"], ["method=layers", "method.top_k=1"]])
def test_dpo_without_an_adapter_trains_against_its_start_model(train_objective, preference_files, method):
    """No adapter to disable: the reference log-probs are the start model's, scored once before step 1."""
    result = train_objective(*preference_files, *method, "objective=dpo", "objective.beta=0.5", "train.max_steps=8",
                             "train.batch_size=4", "train.eval_every=2", "train.lr=1e-3")
    evals = records(result.run_dir, "val_reward_margin")
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
    assert evals[-1]["val_reward_margin"] > evals[0]["val_reward_margin"] > 0
    assert evals[-1]["val_pair_accuracy"] >= 0.75
    steps = records(result.run_dir, "loss")
    assert steps[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == stored reference at the start: log 2
    assert steps[0]["rewards_chosen"] == pytest.approx(0.0, abs=1e-4)
    assert min(r["loss"] for r in steps[-3:]) < steps[0]["loss"]
    assert "adapter_config.json" not in {p.name for p in result.adapter_dir.iterdir()}


def _full_dpo(tiny_tokenizer, preference_files):
    from hone.config.load import load_config
    from hone.models.attention import use_segment_attention
    from hone.models.tiny import tiny_model
    from hone.objectives import build_objective

    config = load_config(None, ["method=full", "objective=dpo", f"data.train={preference_files[0]}",
                                f"data.validation={preference_files[1]}", "data.max_length=384"])
    objective = build_objective(config.objective)
    data = objective.prepare(config.data, tiny_tokenizer, seed=0)
    model = tiny_model(tiny_tokenizer)
    return config, objective, data, model, use_segment_attention(model)


def test_stored_reference_is_an_untouched_copy_of_the_start_model(tiny_tokenizer, preference_files):
    import copy

    from hone.data.batching import Batching
    from hone.data.pairs import pair_batches
    from hone.methods import method_for
    from hone.objectives.dpo import sequence_log_probs

    config, objective, data, model, segmented = _full_dpo(tiny_tokenizer, preference_files)
    start = copy.deepcopy(model)
    batching = Batching.for_run(config.data, tiny_tokenizer.pad_token_id, segmented)
    objective.begin(model, data, batching, method_for(config.method.type))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for pairs in (data.train[:4], data.train[4:8]):  # training moves the policy, not the stored reference
        loss, _ = objective.loss(model, objective.collate(pairs, batching))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    pairs = data.train + data.validation
    batches = pair_batches(pairs, batching, per_batch=3)
    with torch.no_grad():
        expected = torch.cat([sequence_log_probs(start, b, 1024)[0] for b in batches])
        now = torch.cat([sequence_log_probs(model, b, 1024)[0] for b in batches])
    stored = torch.tensor([value for pair in pairs for value in pair.reference])
    assert len(stored) == 2 * (32 + 8)
    torch.testing.assert_close(stored, expected, atol=1e-5, rtol=0)
    assert (now - expected).abs().max() > 1e-2  # the trained model scores differently: the check can tell


def test_full_dpo_resumed_from_a_checkpoint_gives_the_same_losses(train_objective, preference_files, tmp_path):
    """The resumed run scores the reference again from the loaded base, before restoring the checkpoint."""
    import shutil

    from hone.api import train

    whole = train_objective(*preference_files, "method=full", "objective=dpo", "objective.beta=0.5", "train.lr=1e-3",
                            "train.max_steps=6", "train.save_every=3", "train.keep_checkpoints=2", "train.batch_size=4", "train.eval_every=3",
                            name="whole")
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole.run_dir / "checkpoints" / "step-3", part / "checkpoints" / "step-3")
    (part / "checkpoints" / "latest").write_text("step-3")
    for name in ("config.yaml", "metrics.jsonl"):
        shutil.copy(whole.run_dir / name, part / name)
    said = []
    train(resume=part, progress=False, log=said.append)
    assert any("resumed from" in str(line) and "step-3" in str(line) for line in said)
    expected, resumed = records(whole.run_dir, "loss"), records(part, "loss")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert resumed[3]["loss"] < 0.69  # step 4 starts from trained weights against the start model's reference
    for a, b in zip(expected, resumed):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6), a["step"]
        assert b["reward_margin"] == pytest.approx(a["reward_margin"], abs=1e-6), a["step"]
    assert records(part, "val_loss")[-1]["val_loss"] == pytest.approx(records(whole.run_dir, "val_loss")[-1]["val_loss"],
                                                                      abs=1e-6)


def test_dpo_refuses_sft_records_naming_the_line(train_objective, pizza_files):
    from hone.errors import DataError

    with pytest.raises(DataError) as error:
        train_objective(pizza_files[0], pizza_files[1], "objective=dpo", "train.max_steps=1")
    text = str(error.value)
    assert f"{pizza_files[0]}:1: is a chat record; objective dpo takes preference records" in text
    assert '"chosen"' in text and "preferred_output" in text  # the expected shape


def test_sft_refuses_preference_records(train_objective, preference_files):
    from hone.errors import DataError

    with pytest.raises(DataError, match=r"train.jsonl:1: is a preference record; objective sft takes chat"):
        train_objective(*preference_files, "train.max_steps=1")


def test_linear_token_log_probs_match_log_softmax_with_gradients():
    from hone.objectives.losses import linear_token_log_probs

    torch.manual_seed(0)
    hidden = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(30, 8, dtype=torch.float64)
    targets = torch.randint(0, 30, (13,))
    upstream = torch.randn(13, dtype=torch.float64)
    ours = linear_token_log_probs(hidden, weight, targets, 4)
    (grad,) = torch.autograd.grad((ours * upstream).sum(), hidden)
    ref = torch.log_softmax(hidden @ weight.T, -1).gather(1, targets[:, None])[:, 0]
    (ref_grad,) = torch.autograd.grad((ref * upstream).sum(), hidden)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_dpo_config_checks_its_options():
    from hone.config.load import load_config
    from hone.errors import ConfigError

    config = load_config(None, ["objective=dpo", "objective.variant=hinge", "objective.beta=0.2"])
    assert (config.objective.type, config.objective.variant, config.objective.beta) == ("dpo", "hinge", 0.2)
    with pytest.raises(ConfigError, match="label_smoothing applies to the sigmoid variant"):
        load_config(None, ["objective=dpo", "objective.variant=ipo", "objective.label_smoothing=0.1"])
    with pytest.raises(ConfigError, match="objective.variant: Input should be .sigmoid., .ipo. or .hinge."):
        load_config(None, ["objective=dpo", "objective.variant=kto"])
