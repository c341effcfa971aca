"""The family matrix: every family in hone.models.families, through the same checks.

A tiny random model of each family's own architecture, with a tokenizer holding its special tokens
and its published chat template: the template's exact rendering, the loss mask, packing, LoRA and
full training, save and load, merge, GGUF export (or its refusal) and serving parity.
"""

import json

import httpx
import pytest
import torch

from hone.data.formats import Example
from hone.data.pack import collate
from hone.data.template import IGNORE, tokenize_example
from hone.data.templates import with_thinking
from hone.errors import HoneError, ModelError
from hone.models.attention import use_segment_attention
from hone.models.families import FAMILIES, save_tiny_family
from hone.models.load import load_model
from hone.objectives.sft import hidden_states

NAMES = list(FAMILIES)
# Templates that re-render earlier replies once a later one follows (Qwen3 drops their <think>
# block, GPT-OSS ends only the last with <|return|>) train the last reply of a conversation.
SINGLE_TURN = {"qwen3", "qwen3-moe", "gpt-oss"}

# The published turn format of each family for [user, assistant] and its generation prompt for [user].
RENDERED = {
    "llama3": ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
               "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "qwen2.5": ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
                "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    "qwen3": ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n",
              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    "gemma2": ("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
               "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"),
    "mistral": ("<s>[INST] Hi[/INST] Hello!</s>", "<s>[INST] Hi[/INST]"),
    "phi3": ("<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|endoftext|>", "<|user|>\nHi<|end|>\n<|assistant|>\n"),
    "smollm3": ("<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nReasoning Mode: /think\n\n"
                "## Custom Instructions\n\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n"
                "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
                "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\nReasoning Mode: /think\n\n"
                "## Custom Instructions\n\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face.\n\n"
                "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    "gpt-oss": ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
                "Channel must be included for every message.<|end|><|start|>user<|message|>Hi<|end|>"
                "<|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
                "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
                "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
                "Channel must be included for every message.<|end|><|start|>user<|message|>Hi<|end|><|start|>assistant"),
}
RENDERED["qwen3-moe"] = RENDERED["qwen3"]
RENDERED["gemma3"] = RENDERED["gemma2"]
# What a reply trains: the text the model must generate after the generation prompt, to its end of turn.
TARGET = {"llama3": "{}<|eot_id|>", "qwen2.5": "{}<|im_end|>", "qwen3": "<think>\n\n</think>\n\n{}<|im_end|>",
          "gemma2": "{}<end_of_turn>", "mistral": " {}</s>", "phi3": "{}<|end|>", "smollm3": "{}<|im_end|>",
          "gpt-oss": "<|channel|>final<|message|>{}<|return|>"}
TARGET.update({"qwen3-moe": TARGET["qwen3"], "gemma3": TARGET["gemma2"]})

QUESTIONS = ["Two large pizzas with olives", "One small pizza, extra cheese", "Three pizzas with mushrooms",
             "A large pizza for delivery", "Four small pizzas please", "One pizza with olives and cheese"]


def conversation(k: int, turns: int = 1) -> list[dict]:
    messages = []
    for t in range(turns):
        question = QUESTIONS[(k + t) % len(QUESTIONS)]
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": f'{{"quantity": {k + t + 1}, "order": "{question.split()[-1]}"}}'}]
    return messages


def chat(name: str, k: int) -> list[dict]:
    return conversation(k, 1 if name in SINGLE_TURN else 2)


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    made = {}

    def build(name):
        if name not in made:
            made[name] = save_tiny_family(name, tmp_path_factory.mktemp(name.replace(".", "_")))
        return made[name]

    return build


def loaded(family_dir, name):
    """(model, tokenizer) of the family as hone loads it, its template switched as training switches it."""
    model, tokenizer, _ = load_model(str(family_dir(name)))
    tokenizer.chat_template = with_thinking(tokenizer.chat_template, True)
    return model, tokenizer


def examples(name, tokenizer, n=6):
    return [tokenize_example(Example(format="chat", messages=[{**m, "weight": 1} for m in chat(name, k)],
                                     where=f"line {k}"), tokenizer) for k in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_the_template_renders_the_family_turn_format_exactly(family_dir, name):
    _, tokenizer = loaded(family_dir, name)
    full, prompt = RENDERED[name]
    hello = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert tokenizer.apply_chat_template(hello, tokenize=False) == full
    assert tokenizer.apply_chat_template(hello[:1], tokenize=False, add_generation_prompt=True) == prompt


@pytest.mark.parametrize("name", NAMES)
def test_the_mask_trains_each_reply_and_its_end_of_turn_and_nothing_else(family_dir, name):
    _, tokenizer = loaded(family_dir, name)
    messages = chat(name, 0)
    tokenized = tokenize_example(Example(format="chat", messages=[{**m, "weight": 1} for m in messages]), tokenizer)
    runs, current = [], []
    for token, label in zip(tokenized.input_ids, tokenized.labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    runs += [current] if current else []
    trained = [tokenizer.decode(run) for run in runs]
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert trained == [TARGET[name].format(reply) for reply in replies]


@pytest.mark.parametrize("name", sorted(SINGLE_TURN))
def test_replies_a_template_rewrites_once_a_later_one_follows_stay_context(family_dir, name):
    _, tokenizer = loaded(family_dir, name)
    messages = conversation(0, 2)
    tokenized = tokenize_example(Example(format="chat", messages=[{**m, "weight": 1} for m in messages]), tokenizer)
    assert tokenized.untrained_replies == 1
    trained = tokenizer.decode([t for t in tokenized.labels if t != IGNORE])
    assert trained == TARGET[name].format(messages[-1]["content"])
    assert messages[1]["content"] in tokenizer.decode(tokenized.input_ids)  # still there, as context


def reference_loss(model, tokenized) -> float:
    """Summed next-token CE of each example on its own, through the model's own eager forward."""
    total = 0.0
    for example in tokenized:
        ids = torch.tensor([example.input_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        labels = torch.tensor(example.labels[1:])
        total += torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum").item()
    return total


@pytest.mark.parametrize("name", NAMES)
def test_a_packed_row_gives_the_loss_of_its_examples_one_by_one(family_dir, name):
    from hone.objectives import build_objective
    from hone.objectives.sft import Config

    model, tokenizer = loaded(family_dir, name)
    model.set_attn_implementation("eager")
    tokenized = examples(name, tokenizer)
    expected = reference_loss(model, tokenized)
    assert use_segment_attention(model)
    batch = collate(tokenized, [list(range(len(tokenized)))], tokenizer.pad_token_id, mask=False)
    assert batch["input_ids"].shape[0] == 1 and batch["input_ids"].shape[1] > 4 * 8  # longer than the window
    with torch.no_grad():
        loss, _ = build_objective(Config()).loss(model, batch)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def train_steps(model, tokenizer, name, steps, lr):
    from hone.objectives import build_objective
    from hone.objectives.sft import Config

    objective = build_objective(Config())
    use_segment_attention(model)
    batch = collate(examples(name, tokenizer), [list(range(6))], tokenizer.pad_token_id, mask=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss, _ = objective.loss(model, batch)
        (loss / objective.units(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item() / objective.units(batch))
    return losses


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["lora", "full"])
def test_training_makes_the_loss_fall(family_dir, name, method):
    from hone.config.load import load_config
    from hone.methods import method_for

    model, tokenizer = loaded(family_dir, name)
    config = load_config(None, [f"model={family_dir(name)}", f"method={method}", "method.rank=8"]
                         if method == "lora" else [f"model={family_dir(name)}", "method=full"])
    torch.manual_seed(0)
    model = method_for(method).apply(model, config.method)
    losses = train_steps(model, tokenizer, name, 5, 5e-3 if method == "lora" else 3e-3)
    assert losses[-1] < losses[0] - 0.05, losses  # per target token, in nats


@pytest.fixture(scope="module")
def trained(family_dir, tmp_path_factory):
    """`hone train` (LoRA, a few steps) on each family; the run and its held-out prompts."""
    from hone.api import train

    runs = {}

    def run(name):
        if name not in runs:
            out = tmp_path_factory.mktemp(f"run-{name.replace('.', '_')}")
            lines = [json.dumps({"messages": chat(name, k)}) for k in range(6)]
            (out / "train.jsonl").write_text("\n".join(lines * 2) + "\n")
            (out / "heldout.jsonl").write_text("\n".join(lines[:2]) + "\n")
            result = train(None, [f"model={family_dir(name)}", f"data.train={out / 'train.jsonl'}",
                                  f"data.validation={out / 'heldout.jsonl'}", f"output_dir={out}", "name=run",
                                  "train.lr=1e-2", "train.threads=1", "train.max_steps=3", "method.rank=4",
                                  "train.batch_size=4"], progress=False, log=lambda *a: None)
            runs[name] = (result, out / "heldout.jsonl")
        return runs[name]

    return run


def logits_of(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("name", NAMES)
def test_save_then_load_gives_equal_logits_and_a_merge_equals_base_plus_adapter(family_dir, trained, tmp_path, name):
    from hone.export.merge import merge_artifact
    from hone.methods.tuned import load_tuned

    result, _ = trained(name)
    model, tokenizer, manifest = load_tuned(result.run_dir)
    ids = torch.tensor([examples(name, tokenizer, 1)[0].input_ids])
    tuned = logits_of(model, ids)
    base, _ = loaded(family_dir, name)
    assert not torch.allclose(tuned, logits_of(base, ids), atol=1e-4)  # the adapter changed something
    model.save_pretrained(tmp_path / "again")
    again, _, _ = load_tuned(result.run_dir)
    assert torch.equal(logits_of(again, ids), tuned)
    merged_dir = merge_artifact(result.run_dir, tmp_path / "merged").out
    merged, merged_tokenizer, _ = load_model(str(merged_dir))
    assert torch.allclose(logits_of(merged, ids), tuned, atol=1e-4)
    assert "enable_thinking" not in manifest["chat_template"] or manifest["chat_template"].startswith(
        "{%- set enable_thinking = true -%}")


@pytest.mark.parametrize("name", NAMES)
def test_gguf_export_reads_back_or_is_refused_naming_the_architecture(family_dir, tmp_path, name):
    from transformers import AutoModelForCausalLM

    from hone.export.gguf import write_gguf

    fam = FAMILIES[name]
    if not fam.gguf:
        with pytest.raises(ModelError, match=f"model type '{fam.model_type}' cannot be exported to GGUF"):
            write_gguf(family_dir(name), tmp_path / "out.gguf", dtype="f32")
        return
    path = write_gguf(family_dir(name), tmp_path / "out.gguf", dtype="f32")
    back = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    model, tokenizer = loaded(family_dir, name)
    ids = torch.tensor([examples(name, tokenizer, 1)[0].input_ids])
    assert torch.allclose(logits_of(back, ids), logits_of(model, ids), atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_served_generated_and_merged_answers_agree(trained, name):
    from hone.serve.verify import verify_run

    result, heldout = trained(name)
    if not FAMILIES[name].served_side_by_side:
        with pytest.raises(httpx.HTTPStatusError, match="400 Bad Request") as refused:
            verify_run(result.run_dir, file=str(heldout), limit=2, max_new_tokens=6)
        assert "fused expert weights" in refused.value.response.json()["error"]["message"]
        return
    report = verify_run(result.run_dir, file=str(heldout), limit=2, max_new_tokens=6)
    assert report["server"] == {"identical": True, "equal": 2, "of": 2}
    assert report["merged"] == {"identical": True, "equal": 2, "of": 2}


@pytest.mark.parametrize("name", NAMES)
def test_the_server_renders_the_prompt_each_reply_was_trained_after(family_dir, trained, name):
    """The served prompt (the adapter's recorded template) is token for token what preceded the reply in training."""
    from hone.data.template import prompt_ids
    from hone.infer.engine import Engine
    from hone.models.artifact import read_manifest

    result, _ = trained(name)
    _, tokenizer = loaded(family_dir, name)
    tokenizer.chat_template = read_manifest(result.adapter_dir)["chat_template"]
    messages = chat(name, 0)
    tokenized = tokenize_example(Example(format="chat", messages=[{**m, "weight": 1} for m in messages[:2]]), tokenizer)
    first = next(t for t, label in enumerate(tokenized.labels) if label != IGNORE)
    engine = Engine.from_spec(str(family_dir(name)))
    engine.register("tuned", result.adapter_dir)
    assert prompt_ids(messages[:1], engine.tokenizer, chat_template=engine.chat_template("tuned")) == \
        tokenized.input_ids[:first]


@pytest.mark.parametrize("name", NAMES)
def test_lora_targets_what_the_family_table_says(family_dir, name):
    from hone.config.load import load_config
    from hone.methods import method_for

    model, _ = loaded(family_dir, name)
    peft = method_for("lora").apply(model, load_config(None, ["method=lora"]).method).peft_config["default"]
    claim = FAMILIES[name].lora_targets
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".self_attn." in n and "lora_" in n for n in trained)
    assert any(".mlp." in n and "lora_" in n for n in trained) == ("MLP" in claim or "fused expert weights" in claim)
    assert bool(peft.target_parameters) == ("fused expert weights" in claim)
