"""`hone merge`: the merge functions on hand-computed tensors, against PEFT's merge code, and two tiny
runs on different toy tasks merged into one adapter that keeps most of each task."""

import json
import math

import pytest
import torch

from hone.export.merge_runs import dare_merge, factor_low_rank, linear_merge, slerp, ties_merge, trim_to_density


def test_ties_trims_elects_and_merges_disjointly_by_hand():
    d1 = torch.tensor([3.0, -1.0, 2.0, 0.5])
    d2 = torch.tensor([-2.0, 4.0, 1.0, 0.1])
    # density 0.5 keeps 2 of 4: d1 -> [3, 0, 2, 0], d2 -> [-2, 4, 0, 0]
    assert trim_to_density(d1, 0.5).tolist() == [3.0, 0.0, 2.0, 0.0]
    # signs of the sums [1, 4, 2, 0]: +, +, +, none. Entry 0 keeps d1 only (d2 disagrees), entry 1 d2 only.
    assert ties_merge([d1, d2], [1.0, 0.5], 0.5).tolist() == [3.0, 0.5 * 4.0, 2.0, 0.0]
    # Two agreeing entries are averaged: [2, 0] and [4, 0] at density 0.5 -> 3.
    assert ties_merge([torch.tensor([2.0, 0.1]), torch.tensor([4.0, 0.2])], [1.0, 1.0], 0.5).tolist() == [3.0, 0.0]


def test_ties_matches_peft_on_random_deltas():
    from peft.utils.merge_utils import ties

    g = torch.Generator().manual_seed(0)
    deltas = [torch.randn(16, 8, generator=g) for _ in range(3)]
    weights = [1.0, 0.7, 0.4]
    torch.testing.assert_close(ties_merge(deltas, weights, 0.3), ties(deltas, torch.tensor(weights), 0.3))


def test_dare_drops_with_a_seeded_mask_and_rescales_by_hand():
    d1, d2 = torch.arange(1.0, 9.0), -torch.arange(1.0, 9.0)
    merged = dare_merge([d1, d2], [1.0, 0.5], 0.25, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # the same masks, drawn in the same order
    m1 = torch.bernoulli(torch.full((8,), 0.25), generator=g)
    m2 = torch.bernoulli(torch.full((8,), 0.25), generator=g)
    torch.testing.assert_close(merged, d1 * m1 * 4 + 0.5 * d2 * m2 * 4)  # survivors x 1 / density
    # Unbiased: the mean over many masks approaches the linear merge.
    g = torch.Generator().manual_seed(0)
    mean = sum(dare_merge([d1, d2], [1.0, 0.5], 0.25, g) for _ in range(4000)) / 4000
    torch.testing.assert_close(mean, linear_merge([d1, d2], [1.0, 0.5]), atol=0.35, rtol=0)


def test_slerp_follows_the_angle_by_hand():
    # Orthogonal, lengths 2: halfway is at 45 degrees, length 2: sin(pi/4) / sin(pi/2) * (a + b).
    out = slerp(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0]), 0.5)
    torch.testing.assert_close(out, torch.tensor([math.sqrt(2), math.sqrt(2)]))
    # A third of the way through 90 degrees: (sin 60 a + sin 30 b) / sin 90.
    out = slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), 1 / 3)
    torch.testing.assert_close(out, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    # Parallel deltas: linear.
    torch.testing.assert_close(slerp(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]), 0.5), torch.tensor([1.5, 1.5]))


def test_low_rank_factors_are_exact_at_the_delta_rank():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(12, 3, generator=g) @ torch.randn(3, 10, generator=g)
    b, a = factor_low_rank(delta, 3)
    assert b.shape == (12, 3) and a.shape == (3, 10)
    torch.testing.assert_close(b @ a, delta, atol=1e-5, rtol=1e-5)


TASKS = {"animals": [(f"Name animal {i}", "cat dog cow") for i in range(24)],
         "numbers": [(f"Count up {i}", "one two three four") for i in range(24)]}


def _nll(adapter, items):
    from hone.evaluate.perplexity import example_nll, reference_example
    from hone.methods.tuned import load_tuned

    model, tokenizer, _ = load_tuned(adapter)
    nll = example_nll(model, tokenizer, [reference_example([{"role": "user", "content": p}], a) for p, a in items])
    return sum(s for s, _ in nll) / sum(n for _, n in nll)


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory, sharp_model_dir):
    from hone.api import train

    out = tmp_path_factory.mktemp("merge")
    runs = {}
    for name, items in TASKS.items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": p, "completion": a}) + "\n" for p, a in items[:16]))
        runs[name] = train(None, [f"model={sharp_model_dir}", f"data.train={path}", "data.validation_fraction=0",
                                  f"output_dir={out}", f"name={name}", "train.lr=5e-3", "train.threads=1",
                                  "train.max_steps=30", "train.batch_size=4", "method.rank=4"],
                           progress=False, log=lambda *a: None).run_dir
    return out, runs


@pytest.mark.parametrize("method, extra", [("linear", ["--weights", "1,1"]), ("ties", ["--density", "0.5"]),
                                           ("dare", ["--weights", "1,1", "--density", "0.7"]), ("slerp", [])])
def test_merged_adapter_keeps_most_of_each_task(task_runs, sharp_model_dir, method, extra, capsys):
    """Each task's NLL on held-out prompts: the merge keeps at least 60 % of each run's gain over the base."""
    from hone.cli import main

    out, runs = task_runs
    merged = out / f"merged-{method}"
    assert main(["merge", str(runs["animals"]), str(runs["numbers"]), "--method", method, *extra,
                 "--out", str(merged)]) == 0
    said = capsys.readouterr().out
    assert f"merged 2 runs ({method}" in said and "rank 8" in said
    manifest = json.loads((merged / "hone.json").read_text())
    assert manifest["merged_from"]["method"] == method and manifest["method"]["rank"] == 8
    assert json.loads((merged / "adapter_config.json").read_text())["r"] == 8
    base = _base_nll(sharp_model_dir)
    for name, other in (("animals", "numbers"), ("numbers", "animals")):
        held_out = TASKS[name][16:]
        alone, together, elsewhere = _nll(runs[name], held_out), _nll(merged, held_out), _nll(runs[other], held_out)
        kept = (base[name] - together) / (base[name] - alone)
        print(method, name, f"base {base[name]:.3f} alone {alone:.3f} merged {together:.3f} other run {elsewhere:.3f} "
              f"kept {kept:.2f}")
        assert base[name] - alone > 2.0, name  # the run learnt its task
        assert kept > 0.5, (name, base[name], alone, together)  # most of the run's gain on its own task
        assert together < elsewhere - 0.5  # and much more than the other task's run brings to it
    if method == "linear":
        assert "refactoring error 0.00%" in said  # rank 4 + 4: the sum is exact


_BASE = {}


def _base_nll(model_dir):
    from hone.evaluate.perplexity import example_nll, reference_example
    from hone.models.load import load_model

    if not _BASE:
        model, tokenizer, _ = load_model(str(model_dir))
        for name, items in TASKS.items():
            nll = example_nll(model, tokenizer, [reference_example([{"role": "user", "content": p}], a)
                                                 for p, a in items[16:]])
            _BASE[name] = sum(s for s, _ in nll) / sum(n for _, n in nll)
    return _BASE


def test_merge_refuses_what_it_cannot_merge(task_runs, tmp_path):
    from hone.errors import ConfigError
    from hone.export.merge_runs import merge_runs

    _, runs = task_runs
    pair = [runs["animals"], runs["numbers"]]
    with pytest.raises(ConfigError, match="slerp interpolates between two runs, got 3"):
        merge_runs(pair + [runs["animals"]], tmp_path / "a", method="slerp")
    with pytest.raises(ConfigError, match="1 weights for 2 runs"):
        merge_runs(pair, tmp_path / "b", weights=[1.0])
    with pytest.raises(ConfigError, match="at least two runs"):
        merge_runs(pair[:1], tmp_path / "c")


def test_full_runs_merge_into_one_model_of_the_base_plus_merged_deltas(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from hone.api import train
    from hone.export.merge_runs import merge_runs
    from hone.methods.tuned import load_tuned
    from hone.models.load import load_model

    runs = []
    for name, items in TASKS.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": p, "completion": a}) + "\n" for p, a in items[:8]))
        runs.append(train(None, [f"model={tiny_model_dir}", f"data.train={path}", "data.validation_fraction=0",
                                 f"output_dir={tmp_path}", f"name={name}", "method=full", "train.lr=1e-3",
                                 "train.threads=1", "train.max_steps=2", "train.batch_size=4"],
                          progress=False, log=lambda *a: None).adapter_dir)
    result = merge_runs(runs, tmp_path / "merged", method="linear", weights=[0.25, 0.75])
    assert result.kind == "model" and "one model" in result.render()
    base = load_model(str(tiny_model_dir))[0].state_dict()
    tuned = [load_file(run / "model.safetensors") for run in runs]
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    assert set(merged) == set(tuned[0])
    moved = 0
    for key, value in merged.items():
        expected = base[key] + 0.25 * (tuned[0][key] - base[key]) + 0.75 * (tuned[1][key] - base[key])
        torch.testing.assert_close(value, expected, atol=1e-6, rtol=0)
        moved += not torch.equal(value, base[key])
    assert moved > 0
    model, _, manifest = load_tuned(tmp_path / "merged")  # loads like any hone artifact
    assert manifest["merged_from"]["weights"] == [0.25, 0.75]
