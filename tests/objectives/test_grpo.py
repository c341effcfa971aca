"""GRPO: the loss and advantages by hand, sampling and packed log-probs, tiny runs against a grader
and against a reward model."""

import json
import math

import pytest
import torch

from hone.objectives.grpo import group_advantages, grpo_loss

from .conftest import records

# Two completions: row 0 has 2 tokens, row 1 has 1 (its second position is padding).
LOGP = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
OLD = torch.tensor([[-1.0, -2.5], [-0.2, -9.0]])  # ratios e^0 = 1, e^0.5 = 1.6487, e^-0.3 = 0.7408
REF = torch.tensor([[-1.0, -1.5], [-0.5, -9.0]])  # ref - logp: 0, 0.5, 0
ADV = torch.tensor([1.0, -2.0])
MASK = torch.tensor([[1, 1], [1, 0]])
K3 = math.exp(0.5) - 0.5 - 1  # 0.148721...


def test_grpo_loss_by_hand():
    # Token (0,0): ratio 1, A 1 -> surrogate 1. Token (0,1): ratio 1.6487 clipped to 1.2 (A > 0) -> 1.2,
    # kl K3. Token (1,0): ratio 0.7408, A -2: min(-1.4816, clip 0.8 * -2 = -1.6) = -1.6 (clipped).
    beta, eps = 0.1, 0.2
    per_token = [-(1.0 - 0), -(1.2 - beta * K3), -(-1.6 - 0)]
    loss, kl, clipped = grpo_loss(LOGP, OLD, REF, ADV, MASK, eps, beta, normalization="token")
    assert loss.item() == pytest.approx(sum(per_token) / 3, abs=1e-6)
    torch.testing.assert_close(kl, torch.tensor([[0.0, K3], [0.0, 0.0]]))
    assert clipped.tolist() == [[False, True], [True, False]]

    sequence, _, _ = grpo_loss(LOGP, OLD, REF, ADV, MASK, eps, beta, normalization="sequence")
    assert sequence.item() == pytest.approx(((per_token[0] + per_token[1]) / 2 + per_token[2]) / 2, abs=1e-6)
    constant, _, _ = grpo_loss(LOGP, OLD, REF, ADV, MASK, eps, beta, normalization="constant", max_tokens=4)
    assert constant.item() == pytest.approx(sum(per_token) / (2 * 4), abs=1e-6)


def test_grpo_loss_gradient_is_the_policy_gradient_when_ratio_is_one():
    """At ratio 1 without KL, d loss / d logp = -A / tokens on every real token (the REINFORCE form)."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]], requires_grad=True)
    loss, _, clipped = grpo_loss(logp, logp.detach(), logp.detach(), ADV, MASK, 0.2, 0.0)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 3, -1 / 3], [2 / 3, 0.0]]))
    assert not clipped.any()


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [3.0, 0.0, 0.0, 0.0]])
    # Group 0: mean 0.5, sample std sqrt(1/3) = 0.57735. Group 2: mean 0.75, std sqrt((5.0625 + 3 * 0.5625) / 3) = 1.5.
    s0 = math.sqrt(1 / 3)
    expected = torch.tensor([[0.5 / s0, -0.5 / s0, -0.5 / s0, 0.5 / s0], [0.0] * 4, [2.25 / 1.5, -0.5, -0.5, -0.5]])
    torch.testing.assert_close(group_advantages(rewards, eps=0.0)[[0, 2]], expected[[0, 2]])
    assert group_advantages(rewards)[1].tolist() == [0.0] * 4  # no variance, no signal (and no NaN)
    torch.testing.assert_close(group_advantages(rewards, scale=False),
                               torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [2.25, -0.75, -0.75, -0.75]]))


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    """Graded prompts (OpenAI's RFT shape): the grader reads `{{item.letter}}`."""
    out = tmp_path_factory.mktemp("prompts")
    words = ["pizza", "fox", "dog", "cheese", "order", "Paris", "quick", "lazy", "olives", "crust"]
    lines = [json.dumps({"messages": [{"role": "user", "content": f"Say {w} {i}"}], "letter": "e"}) for i, w in
             enumerate(words)]
    (out / "train.jsonl").write_text("\n".join(lines[:8]) + "\n")
    (out / "val.jsonl").write_text("\n".join(lines[8:]) + "\n")
    return out / "train.jsonl", out / "val.jsonl"


def test_group_log_probs_and_gradients_match_each_sequence_alone(sharp_model_dir):
    """Each prompt computed once for its group (its KV cache shared, with gradients) gives the same
    per-token log-probs, and the same LoRA gradients, as every (prompt + completion) run alone; prompts
    and completions of different lengths exercise the left and right padding."""
    from hone.config.load import load_config
    from hone.data.prompts import PromptUnit
    from hone.data.template import prompt_ids
    from hone.methods import lora
    from hone.models.load import load_model
    from hone.objectives.grpo import GRPO, group_log_probs

    model, tokenizer, _ = load_model(str(sharp_model_dir))
    config = load_config(None, ["objective=grpo", "objective.group_size=4", "objective.max_new_tokens=6",
                                "objective.temperature=0.7", 'objective.grader={"type": "string_check"}',
                                "method.rank=4"])
    model = lora.apply(model, config.method)
    torch.manual_seed(0)
    with torch.no_grad():  # a LoRA that is not the identity, so its A matrices get gradients too
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.1)
    objective = GRPO(config.objective)
    objective.tokenizer = tokenizer
    prompts = [PromptUnit(prompt_ids([{"role": "user", "content": text}], tokenizer), [], {}, text)
               for text in ("Say pizza", "Say the quick brown dog", "fox")]
    assert len({len(p.ids) for p in prompts}) == 3
    completions = objective.sample(model, prompts, 4, 0.7)
    assert len(completions) == 12 and len({tuple(c) for c in completions}) > 6  # sampled, not copies
    completions = [c[:1 + n % 6] for n, c in enumerate(completions)]  # lengths 1 to 6, as if stopped early
    weights = torch.randn(12, max(map(len, completions)))
    model.train()

    logprobs, mask = group_log_probs(model, [p.ids for p in prompts], completions, 0.7, 5, tokenizer.pad_token_id)
    assert mask.tolist() == [[n < len(c) for n in range(mask.shape[1])] for c in completions]
    (logprobs * weights).sum().backward()
    grouped = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    for n, ids in enumerate(completions):
        prompt = prompts[n // 4].ids
        logits = model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1] / 0.7
        alone = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None])[:, 0]
        torch.testing.assert_close(logprobs[n, :len(ids)], alone, atol=1e-5, rtol=0)
        (alone * weights[n, :len(ids)]).sum().backward()
    assert grouped and all(g.abs().sum() > 0 for g in grouped.values())
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(grouped[name], param.grad, atol=1e-4, rtol=1e-3)  # summation order differs


def test_grpo_raises_a_learnable_reward(prompt_files, sharp_model_dir):
    """A grader that rewards any `e` in the reply: the mean reward goes up within 16 steps."""
    from hone.api import train

    result = train(None, [f"model={sharp_model_dir}", f"data.train={prompt_files[0]}",
                        f"data.validation={prompt_files[1]}", f"output_dir={prompt_files[0].parent}", "name=letter",
                        "objective=grpo", 'objective.grader={"type": "string_check", "operation": "contains", '
                        '"reference": "{{item.letter}}"}', "objective.group_size=8", "objective.max_new_tokens=6",
                        "train.batch_size=4", "train.schedule=constant", "train.lr=3e-2", "train.max_steps=16",
                        "train.eval_every=8", "train.threads=1", "train.seed=0"], progress=False, log=lambda *a: None)
    steps = records(result.run_dir, "reward_std")
    assert len(steps) == 16
    first, last = [sum(r["reward"] for r in rs) / 5 for rs in (steps[:5], steps[-5:])]
    assert last > first + 0.1, (first, last)
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the adapter starts as the identity
    assert max(r["kl"] for r in steps) > 0
    assert all(r["clip_fraction"] == 0 for r in steps)  # one update per batch: the ratio is exactly 1
    assert all(0 <= r["zero_std_fraction"] <= 1 and 0 < r["completion_length"] <= 6 for r in steps)
    assert all(r["grader_errors"] == 0 for r in steps)
    evals = records(result.run_dir, "val_reward")
    assert [r["step"] for r in evals] == [8, 16]
    assert all(r["val_loss"] == pytest.approx(-r["val_reward"]) for r in evals)
    assert {p.name for p in result.adapter_dir.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                              "hone.json", "README.md"}


def test_grpo_against_a_tiny_reward_model(train_objective, prompt_files, tiny_model_dir, tmp_path):
    """The RLHF path: a reward run's head scores the completions, exactly as `hone score` would."""
    from hone.api import score
    from hone.data.prompts import PromptUnit
    from hone.examples import preferences
    from hone.objectives.grpo_rewards import ModelReward

    pairs = (preferences.write_jsonl(tmp_path / "pairs.jsonl", preferences.reward_pairs(16, 0)),
             preferences.write_jsonl(tmp_path / "pairs_val.jsonl", preferences.reward_pairs(4, 1)))
    reward_run = train_objective(*pairs, "objective=reward", "train.max_steps=2", "train.batch_size=4", name="rm")

    reward = ModelReward(str(reward_run.run_dir))
    messages = [{"role": "user", "content": "Say pizza"}]
    texts = ["pizza", "a much longer answer about pizza", ""]
    scores, failures = reward(texts, [PromptUnit([], messages, {}, "p")] * 3)
    assert failures == [] and len(set(scores)) == 3
    records_file = tmp_path / "replies.jsonl"
    records_file.write_text("".join(json.dumps({"messages": messages + [{"role": "assistant", "content": t}]}) + "\n"
                                    for t in texts[:2]))
    assert [r["score"] for r in score(records_file, adapter=reward_run.run_dir)] == pytest.approx(scores[:2], abs=1e-5)

    result = train_objective(*prompt_files, "objective=grpo", f"objective.reward_model={reward_run.run_dir}",
                             "objective.group_size=4", "objective.max_new_tokens=4", "train.batch_size=2",
                             "train.max_steps=2", name="rlhf")
    steps = records(result.run_dir, "reward_std")
    assert len(steps) == 2 and all(math.isfinite(r["reward"]) and r["reward_std"] > 0 for r in steps)
    assert "grader_errors" not in steps[0]
    assert records(result.run_dir, "val_reward")


def test_grpo_config_needs_exactly_one_reward():
    from hone.config.load import load_config
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="set exactly one of objective.grader"):
        load_config(None, ["objective=grpo"])
    with pytest.raises(ConfigError, match="set exactly one of objective.grader"):
        load_config(None, ["objective=grpo", "objective.reward_model=runs/rm", 'objective.grader={"type": "json"}'])
    with pytest.raises(ConfigError, match="objective.group_size"):
        load_config(None, ["objective=grpo", "objective.group_size=1", 'objective.grader={"type": "json"}'])


@pytest.mark.parametrize("method", ["full", "layers", "adapters"])
def test_grpo_kl_needs_an_adapter_to_disable_up_front(method):
    from hone.config.load import load_config
    from hone.errors import ConfigError

    grader = 'objective.grader={"type": "json"}'
    with pytest.raises(ConfigError, match=f"objective.beta: grpo's KL penalty .* method {method} has no adapter"):
        load_config(None, ["objective=grpo", grader, f"method={method}"])
    assert load_config(None, ["objective=grpo", grader, f"method={method}", "objective.beta=0"]).objective.beta == 0
    assert load_config(None, ["objective=grpo", grader, "method=lora"]).objective.beta > 0


def test_grpo_without_kl_trains_a_method_without_an_adapter(train_objective, prompt_files):
    result = train_objective(*prompt_files, "method=full", "objective=grpo", "objective.beta=0",
                             'objective.grader={"type": "string_check", "operation": "contains", "reference": "e"}',
                             "objective.group_size=4", "objective.max_new_tokens=4", "train.batch_size=2",
                             "train.max_steps=2", "train.lr=1e-3", name="full-grpo")
    steps = records(result.run_dir, "reward_std")
    assert len(steps) == 2 and all(r["kl"] == 0 for r in steps)
    assert "adapter_config.json" not in {p.name for p in result.adapter_dir.iterdir()}


def test_grpo_refuses_a_reward_run_that_is_not_one(train_objective, prompt_files, pizza_files):
    from hone.errors import ConfigError

    sft = train_objective(*pizza_files, "train.max_steps=1", name="sft")
    with pytest.raises(ConfigError, match="objective 'sft'; a reward model is a run trained with objective: reward"):
        train_objective(*prompt_files, "objective=grpo", f"objective.reward_model={sft.run_dir}", "train.max_steps=1",
                        name="bad")


def test_prompt_data_lines_and_items(tmp_path, tiny_tokenizer):
    from hone.data.config import DataConfig
    from hone.data.prompts import prepare_prompts
    from hone.errors import DataError

    good = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "answer": 4}
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(chat) + "\n")
    data = prepare_prompts(DataConfig(train=str(path), validation_fraction=0), tiny_tokenizer, seed=0, objective="grpo")
    graded, supervised = data.train
    assert graded.item == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
                           "prompt": "2+2?", "where": f"{path}:1", "answer": 4}
    assert supervised.item["reference"] == "Hello" and supervised.messages == [{"role": "user", "content": "Hi"}]
    assert tiny_tokenizer.decode(graded.ids).endswith("<|im_start|>assistant\n")

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"messages": [{"role": "assistant", "content": "x"},
                                                                       {"role": "user", "content": "q"}]}) + "\n"
                   + json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(DataError) as error:
        prepare_prompts(DataConfig(train=str(bad)), tiny_tokenizer, seed=0, objective="grpo")
    text = str(error.value)
    assert f"{bad}:2: messages[0].role: is 'assistant'; the conversation must start with a user message" in text
    bad.write_text(json.dumps(good) + "\n" + json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: is a preference record; objective grpo takes graded_prompt"):
        prepare_prompts(DataConfig(train=str(bad)), tiny_tokenizer, seed=0, objective="grpo")


def test_data_check_reports_graded_prompts(tmp_path, tiny_tokenizer):
    from hone.data.report import check_file

    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "answer": 4}) + "\n"
                    + json.dumps({"messages": [{"role": "user", "content": ""}]}) + "\n")
    report = check_file(path, tiny_tokenizer)
    assert report.formats == {"graded_prompt": 1}
    assert [str(i) for i in report.issues] == [f"{path}:2: messages[0].content: is empty; user messages need text"]
    assert report.token_stats["count"] == 1 and report.target_tokens == 0


def test_grpo_continues_an_sft_adapter_against_it_as_reference(train_objective, pizza_files, prompt_files):
    """`method.init_from`: the SFT adapter is the starting policy and the KL reference (KL 0 at step 1,
    which the base with the adapter disabled would not give); the artifact holds one adapter."""
    from safetensors.torch import load_file

    from hone.methods.tuned import load_tuned

    sft = train_objective(*pizza_files, "train.max_steps=2", "method.rank=4", name="sft-start")
    result = train_objective(*prompt_files, "objective=grpo", f"method.init_from={sft.run_dir}",
                             'objective.grader={"type": "string_check", "operation": "contains", "reference": "e"}',
                             "objective.group_size=4", "objective.max_new_tokens=4", "objective.beta=0.5",
                             "train.batch_size=2", "train.max_steps=2", name="from-sft")
    steps = records(result.run_dir, "kl")
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert {p.name for p in result.adapter_dir.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                              "hone.json", "README.md"}
    start = load_file(sft.adapter_dir / "adapter_model.safetensors")
    tuned = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert start.keys() == tuned.keys() and tuned["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape[0] == 4
    assert any(not torch.equal(start[k], tuned[k]) for k in start)
    model, _, manifest = load_tuned(result.run_dir)
    assert list(model.peft_config) == ["default"] and manifest["method"]["init_from"] == str(sft.run_dir)


def test_reference_policy_without_a_start_adapter_is_the_base(train_objective, pizza_files):
    """The control for the test above: a trained SFT adapter computes other logits than the base, so
    KL 0 there comes from the start adapter being the reference, not from an adapter that did nothing."""
    import torch as _torch

    from hone.methods import reference_policy
    from hone.methods.tuned import load_tuned

    sft = train_objective(*pizza_files, "train.max_steps=2", "method.rank=4", name="sft-control")
    model, tokenizer, _ = load_tuned(sft.run_dir)
    ids = _torch.tensor([tokenizer("Order a large pizza")["input_ids"]])
    with _torch.no_grad():
        tuned = model(ids).logits
        with reference_policy(model):
            base = model(ids).logits
    assert (tuned - base).abs().max() > 1e-4


def test_the_pizza_grpo_example_validates_and_grades():
    from pathlib import Path

    from hone.config.load import load_config
    from hone.rewards import grade_outputs
    from hone.rewards.spec import load_spec

    root = Path(__file__).parents[2] / "examples" / "pizza"
    config = load_config(root / "grpo.yaml")
    assert config.objective.type == "grpo" and config.method.init_from == "runs/pizza-sft12"
    assert load_spec(root / "grader.json") == config.objective.grader  # the eval command grades alike
    reference = '{"size": "large", "crust": "thin", "toppings": [], "quantity": 2, "delivery": false}'
    right, wrong_quantity, prose = (g.score for g in grade_outputs(config.objective.grader, [
        reference, reference.replace("2", "1"), "A large pizza."], [{"reference": reference}] * 3))
    assert right == pytest.approx(1.0) and 0.2 < wrong_quantity < 1.0 and prose == 0.0


def test_clip_higher_lets_a_rising_ratio_through():
    """DAPO's asymmetric clip: with 1 + 0.7 above, token (0,1)'s ratio 1.6487 is no longer clipped."""
    beta = 0.1
    loss, _, clipped = grpo_loss(LOGP, OLD, REF, ADV, MASK, 0.2, beta, normalization="token", clip_high=0.7)
    per_token = [-1.0, -(math.exp(0.5) - beta * K3), 1.6]  # token (1,0) still clipped below at 0.8
    assert loss.item() == pytest.approx(sum(per_token) / 3, abs=1e-6)
    assert clipped.tolist() == [[False, False], [True, False]]


def test_gspo_loss_by_hand():
    from hone.objectives.grpo import gspo_loss

    # Sequence ratios: row 0 exp(mean(0, 0.5)) = e^0.25 = 1.2840 -> clipped to 1.2 (A = 1);
    # row 1 exp(-0.3) = 0.7408, A = -2: min(-1.4816, 0.8 * -2) = -1.6 (clipped). Every token of a row
    # carries its row's surrogate; the KL stays per token.
    beta = 0.1
    loss, kl, clipped = gspo_loss(LOGP, OLD, REF, ADV, MASK, 0.2, beta, normalization="sequence")
    row0 = (-1.2 - (1.2 - beta * K3)) / 2
    assert loss.item() == pytest.approx((row0 + 1.6) / 2, abs=1e-6)
    assert clipped.tolist() == [[True, True], [True, False]]
    unclipped, _, none = gspo_loss(LOGP, OLD, REF, ADV, MASK, 0.5, 0.0, normalization="sequence")
    assert unclipped.item() == pytest.approx((-math.exp(0.25) + 2 * math.exp(-0.3)) / 2, abs=1e-6)
    assert not none.any()


def test_gspo_gradient_is_the_sequence_mean_at_ratio_one():
    """At ratio 1 each token of completion i gets -A_i / (|y_i| B) with `sequence` normalisation."""
    from hone.objectives.grpo import gspo_loss

    logp = LOGP.clone().requires_grad_()
    gspo_loss(logp, logp.detach(), logp.detach(), ADV, MASK, 3e-4, 0.0, normalization="sequence")[0].backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 4, -1 / 4], [1.0, 0.0]]))


def test_at_ratio_one_gspo_and_cispo_give_grpo_gradients():
    """One update per sampled batch (ratio 1): gspo's gradient is grpo's with `sequence` normalisation,
    cispo's grpo's with `token` (the pizza comparison's gspo run repeats its grpo run exactly)."""
    from hone.objectives.grpo import cispo_loss, gspo_loss

    def gradient(loss, normalization, old=None):
        logp = LOGP.clone().requires_grad_()
        loss(logp, logp.detach() if old is None else old, REF, ADV, MASK, 0.2, 0.1,
             normalization=normalization)[0].backward()
        return logp.grad

    torch.testing.assert_close(gradient(gspo_loss, "sequence"), gradient(grpo_loss, "sequence"))
    torch.testing.assert_close(gradient(cispo_loss, "token"), gradient(grpo_loss, "token"))
    assert not torch.allclose(gradient(gspo_loss, "sequence", OLD), gradient(grpo_loss, "sequence", OLD))


def test_cispo_loss_by_hand_keeps_the_gradient_of_clipped_tokens():
    from hone.objectives.grpo import cispo_loss

    # Weights sg(clip(ratio, 0.8, 1.2)): [1, 1.2] and [0.8]; per token -(w A logp - beta kl).
    beta = 0.1
    logp = LOGP.clone().requires_grad_()
    loss, _, clipped = cispo_loss(logp, OLD, REF, ADV, MASK, 0.2, beta, clip_high=0.2)
    per_token = [-(1 * 1 * -1.0), -(1.2 * 1 * -2.0 - beta * K3), -(0.8 * -2 * -0.5)]
    assert loss.item() == pytest.approx(sum(per_token) / 3, abs=1e-6)
    assert clipped.tolist() == [[False, True], [True, False]]
    loss.backward()  # d/d logp of -(w A logp - beta kl) / 3; kl's own gradient: beta (1 - exp(ref - logp)) / 3
    kl_grad = torch.tensor([[0.0, beta * (1 - math.exp(0.5))], [0.0, 0.0]]) / 3
    expected = torch.tensor([[-1.0, -1.2], [1.6, 0.0]]) / 3 + kl_grad
    torch.testing.assert_close(logp.grad, expected)
    assert logp.grad[0, 1] != 0  # a clipped token still learns (the PPO clip would zero it)


def test_overlong_penalty_and_dynamic_sampling_by_hand():
    from hone.objectives.grpo import overlong_penalty, varied_groups

    # max 10, buffer 4: no penalty up to 6 tokens, then -(length - 6) / 4, -1 from 10 on.
    assert overlong_penalty([5, 6, 8, 10, 12], 10, 4).tolist() == [0.0, 0.0, -0.5, -1.0, -1.0]
    assert overlong_penalty([5, 12], 10, 0).tolist() == [0.0, 0.0]
    assert overlong_penalty([9], 10, 4, penalty=0.5).tolist() == [-0.375]
    assert varied_groups(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.5, 0.5]])).tolist() == [False, True, False]


def test_grpo_loss_variants_set_their_defaults_and_explicit_settings_win():
    from hone.config.load import load_config
    from hone.errors import ConfigError

    grader = 'objective.grader={"type": "string_check"}'

    def objective(*overrides):
        return load_config(None, ["objective=grpo", grader, *overrides]).objective

    dapo = objective("objective.loss=dapo", "objective.max_new_tokens=100")
    assert (dapo.loss_normalization, dapo.epsilon_low, dapo.epsilon_high, dapo.dynamic_sampling,
            dapo.overlong_buffer) == ("token", 0.2, 0.28, True, 20)
    plain = objective()
    assert (plain.loss, plain.loss_normalization, plain.dynamic_sampling, plain.overlong_buffer) == \
        ("grpo", "sequence", False, 0)
    dr = objective("objective.loss=dr_grpo")
    assert (dr.scale_rewards, dr.loss_normalization) == (False, "constant")
    assert objective("objective.loss=gspo").epsilon_high == 4e-4
    assert objective("objective.loss=dapo", "objective.loss_normalization=sequence").loss_normalization == "sequence"
    old = objective("objective.clip_eps=0.3")
    assert (old.epsilon_low, old.epsilon_high) == (0.3, 0.3)
    with pytest.raises(ConfigError, match="overlong_buffer 50 is longer than max_new_tokens 10"):
        objective("objective.max_new_tokens=10", "objective.overlong_buffer=50")
    with pytest.raises(ConfigError, match="objective.loss"):
        objective("objective.loss=ppo")


@pytest.mark.parametrize("loss", ["dapo", "dr_grpo", "gspo", "cispo"])
def test_grpo_variants_train_and_report_training_health(loss, prompt_files, sharp_model_dir):
    from safetensors.torch import load_file

    from hone.api import train

    result = train(None, [f"model={sharp_model_dir}", f"data.train={prompt_files[0]}",
                          f"data.validation={prompt_files[1]}", f"output_dir={prompt_files[0].parent}",
                          f"name={loss}", "objective=grpo", f"objective.loss={loss}",
                          'objective.grader={"type": "string_check", "operation": "contains", '
                          '"reference": "{{item.letter}}"}', "objective.group_size=4", "objective.max_new_tokens=6",
                          "train.batch_size=4", "train.lr=3e-2", "train.max_steps=3", "train.threads=1"],
                   progress=False, log=lambda *a: None)
    steps = records(result.run_dir, "entropy")
    assert len(steps) == 3
    for r in steps:
        assert r["entropy"] > 0 and 0 <= r["zero_std_fraction"] <= 1 and r["clip_fraction"] == 0
        assert ("dropped_groups" in r) == (loss == "dapo") and ("overlong_penalty" in r) == (loss == "dapo")
    if loss == "dapo":  # 6 // 5 = 1 token of buffer: a 6-token completion loses the whole penalty
        assert all(r["dropped_groups"] == r["zero_std_fraction"] and r["overlong_penalty"] <= 0 for r in steps)
        from hone.evaluate.report import render_page
        from hone.models.artifact import read_manifest

        page = render_page(loss, read_manifest(result.adapter_dir), records(result.run_dir, "step"), None, None,
                           result.run_dir)
        assert 'id="training-health"' in page and (result.run_dir / "health.png").stat().st_size > 0
    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in saved.items() if "lora_B" in n)
