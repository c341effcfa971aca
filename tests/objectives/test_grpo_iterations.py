"""`objective.iterations`: each sampled batch trained on for several optimizer steps, each micro-batch
slot replaying its own rollout, so the ratios leave 1 and the clips bind."""

import pytest
import torch

from hone.methods import reference_policy
from hone.objectives.grpo import GRPO, group_advantages, grpo_loss

GRADER = '{"type": "string_check", "operation": "contains", "reference": "{{item.letter}}"}'


class CountingGRPO(GRPO):
    """GRPO that records the prompts of every sampling call."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.sampled = []

    def sample(self, model, prompts, group_size, temperature):
        self.sampled.append([u.where for u in prompts])
        return super().sample(model, prompts, group_size, temperature)


def setup(sharp_model_dir, *settings):
    from hone.config.load import load_config
    from hone.data.prompts import PromptUnit
    from hone.data.template import prompt_ids
    from hone.methods import lora
    from hone.models.load import load_model
    from hone.objectives.grpo_rewards import load_reward

    model, tokenizer, _ = load_model(str(sharp_model_dir))
    config = load_config(None, ["objective=grpo", "objective.group_size=4", "objective.max_new_tokens=5",
                                f"objective.grader={GRADER}", "method.rank=4", *settings])
    torch.manual_seed(0)
    model = lora.apply(model, config.method)
    with torch.no_grad():  # a LoRA that is not the identity, so both its matrices get gradients
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    objective = CountingGRPO(config.objective)
    objective.tokenizer = tokenizer
    objective.reward = load_reward(config.objective)
    prompts = [PromptUnit(prompt_ids([{"role": "user", "content": text}], tokenizer), [], {"letter": "e"}, text)
               for text in ("Say pizza", "Say the quick dog", "fox", "cheese", "olives", "crust", "Paris", "lazy")]
    model.train()
    return model, objective, prompts


def step(model, objective, batches, lr):
    """One optimizer step (SGD) over the micro-batches as the loop runs it; its loss parts and gradients."""
    units = sum(objective.units(b) for b in batches)
    parts = []
    for batch in batches:
        loss, part = objective.loss(model, batch)
        (loss / units).backward()
        parts.append(part)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    model.zero_grad(set_to_none=True)
    return parts, grads


def batch(prompts):
    return {"prompts": prompts, "pad_id": 0, "segmented": False, "validation": False, "n_tokens": 0}


def test_one_iteration_is_the_one_update_loss(sharp_model_dir):
    """iterations 1 (the default): every micro-batch samples, and its loss and gradients are the clipped
    loss with the policy's own detached log-probs as pi_old (ratio exactly 1, nothing clipped)."""
    model, objective, prompts = setup(sharp_model_dir, "objective.beta=0.1")
    c = objective.config
    assert c.iterations == 1
    for turn in range(2):
        torch.manual_seed(turn)
        (part,), grads = step(model, objective, [batch(prompts[:2])], lr=0.0)
        assert part["clipped"] == 0 and part["ratio_sum"] == pytest.approx(part["trained_tokens"])
        torch.manual_seed(turn)  # the same completions, by hand
        completions = objective.sample(model, prompts[:2], c.group_size, c.temperature)
        ids = [u.ids for u in prompts[:2]]
        scores, _ = objective.reward(objective.texts(completions), [u for u in prompts[:2] for _ in range(4)])
        logprobs, mask = objective.log_probs(model, ids, completions)
        with torch.no_grad(), reference_policy(model):
            ref, _ = objective.log_probs(model, ids, completions)
        advantages = group_advantages(torch.tensor(scores, dtype=torch.float32).view(2, 4)).view(-1)
        loss, _, _ = grpo_loss(logprobs, logprobs.detach(), ref, advantages, mask, 0.2, 0.1,
                               normalization="sequence")
        loss.backward()
        assert part["loss_sum"] == pytest.approx(loss.item() * 8, abs=1e-6)
        for name, param in model.named_parameters():
            if param.requires_grad:
                torch.testing.assert_close(grads[name], param.grad)
        model.zero_grad(set_to_none=True)
    assert len(objective.sampled) == 4  # two by the objective, two by hand: one per micro-batch


def test_two_iterations_replay_each_slots_rollout_under_accumulation(sharp_model_dir):
    """grad_accum 2, iterations 2: step 1 samples both slots; step 2 samples nothing and replays slot 0's
    and slot 1's own rollouts (its planned prompts are skipped), with ratios off 1 and clipped tokens
    after a large update; step 3 samples afresh."""
    model, objective, prompts = setup(sharp_model_dir, "objective.iterations=2", "objective.beta=0")
    objective.accumulate(2)
    slots = [prompts[0:2], prompts[2:4], prompts[4:6], prompts[6:8]]
    first, _ = step(model, objective, [batch(slots[0]), batch(slots[1])], lr=5.0)
    assert objective.sampled == [["Say pizza", "Say the quick dog"], ["fox", "cheese"]]
    assert all(p["ratio_sum"] == pytest.approx(p["trained_tokens"]) and p["clipped"] == 0 for p in first)
    replayed = [objective.rollouts[s]["completions"] for s in (0, 1)]
    second, _ = step(model, objective, [batch(slots[2]), batch(slots[3])], lr=5.0)
    assert len(objective.sampled) == 2  # no new sampling
    assert [objective.rollouts[s]["completions"] for s in (0, 1)] == replayed
    assert [objective.rollouts[s]["ids"] for s in (0, 1)] == [[u.ids for u in slots[0]], [u.ids for u in slots[1]]]
    for old, new in zip(first, second):  # each slot's own rollout: its rewards and lengths again
        assert (new["reward_sum"], new["tokens"], new["completions"]) == (old["reward_sum"], old["tokens"], 8)
        assert new["ratio_sum"] != pytest.approx(new["trained_tokens"], abs=1e-3)
    assert sum(p["clipped"] for p in second) > 0
    report = objective.report(second, 0.0, validation=False)
    assert report["clip_fraction"] > 0 and report["ratio_mean"] != pytest.approx(1.0, abs=1e-4)
    step(model, objective, [batch(slots[2]), batch(slots[3])], lr=0.0)
    assert objective.sampled[2:] == [["olives", "crust"], ["Paris", "lazy"]]


def test_gspo_and_grpo_part_only_when_the_ratio_leaves_one(sharp_model_dir):
    """At the first update on a batch (ratio 1) gspo's gradient is grpo's; at the second, replaying the
    same replies, the sequence-level ratio and its narrow clip give a different one."""
    grads = {}
    for loss in ("grpo", "gspo"):
        model, objective, prompts = setup(sharp_model_dir, "objective.iterations=2", "objective.beta=0",
                                          f"objective.loss={loss}")
        torch.manual_seed(1)
        grads[loss] = [step(model, objective, [batch(prompts[:2])], lr=0.5)[1] for _ in range(2)]
        assert len(objective.sampled) == 1
    first, second = [[grads[loss][i] for loss in ("grpo", "gspo")] for i in (0, 1)]
    assert any(g.abs().sum() > 0 for g in first[0].values())
    for name in first[0]:
        torch.testing.assert_close(first[0][name], first[1][name], atol=1e-6, rtol=1e-4)
    assert max((second[0][n] - second[1][n]).abs().max().item() for n in second[0]) > 1e-4


def test_the_loop_replays_with_accumulation_and_reports_the_ratio(tmp_path, sharp_model_dir):
    """Through `hone train`: the loop tells the objective its grad_accum; the first step of each rollout
    has ratio 1, the replaying step does not."""
    import json

    from hone.api import train

    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": f"Say {w}"}], "letter": "e"}) + "\n"
        for w in ("pizza", "fox", "dog", "cheese", "order", "Paris", "quick", "lazy")))
    result = train(None, [f"model={sharp_model_dir}", f"data.train={tmp_path / 'train.jsonl'}",
                          "data.validation_fraction=0", f"output_dir={tmp_path}", "name=mu2", "objective=grpo",
                          f"objective.grader={GRADER}", "objective.group_size=8", "objective.max_new_tokens=5",
                          "objective.iterations=2", "train.batch_size=2",
                          "train.grad_accum=2", "train.lr=0.3", "train.schedule=constant", "train.max_steps=4",
                          "train.threads=1"], progress=False, log=lambda *a: None)
    steps = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "ratio_mean" in r]
    assert len(steps) == 4
    assert all(r["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and r["clip_fraction"] == 0 for r in steps[::2])
    assert all(first["reward"] == replay["reward"] for first, replay in zip(steps[::2], steps[1::2]))
    assert any(r["ratio_mean"] != pytest.approx(1.0, abs=1e-4) and r["clip_fraction"] > 0 for r in steps[1::2])
