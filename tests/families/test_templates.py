"""Named templates on base models, reasoning data, and serving that renders what was trained."""

import copy
import json

import pytest

from hone.data.formats import parse_record
from hone.data.template import IGNORE, prompt_ids, tokenize_example
from hone.data.templates import CHAT_TEMPLATES, apply_data_template
from hone.errors import HoneError
from hone.models.families import save_tiny_family

REASONED = {"messages": [{"role": "user", "content": "Two pizzas?"},
                         {"role": "assistant", "reasoning_content": "Two means 2.", "content": '{"quantity": 2}'}]}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny Llama-architecture base model whose tokenizer has no chat template."""
    path = save_tiny_family("llama3", tmp_path_factory.mktemp("base"))
    (path / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def data_config(**fields):
    from hone.config.schema import DataConfig

    return DataConfig(**fields)


def test_a_base_model_trains_with_a_named_template_and_serves_with_it(base_dir, tmp_path):
    from hone import api
    from hone.infer.engine import Engine
    from hone.models.artifact import read_manifest

    rows = [json.dumps({"messages": [{"role": "user", "content": f"Order {k}"},
                                     {"role": "assistant", "content": f"{k} pizzas"}]}) for k in range(8)]
    (tmp_path / "train.jsonl").write_text("\n".join(rows) + "\n")
    common = [f"model={base_dir}", f"data.train={tmp_path / 'train.jsonl'}", f"output_dir={tmp_path}",
              "train.max_steps=1", "train.threads=1", "method.rank=2"]
    with pytest.raises(HoneError, match="no chat template"):
        api.train(None, [*common, "name=plain"], progress=False, log=lambda *a: None)
    result = api.train(None, [*common, "name=llama3", "data.chat_template=llama3"], progress=False,
                       log=lambda *a: None)
    manifest = read_manifest(result.adapter_dir)
    assert manifest["chat_template"] == CHAT_TEMPLATES["llama3"]
    assert manifest["data"]["chat_template"] == "llama3"
    engine = Engine.from_spec(str(base_dir))
    engine.register("tuned", result.adapter_dir)
    served = engine.tokenizer.decode(prompt_ids([{"role": "user", "content": "Hi"}], engine.tokenizer,
                                                chat_template=engine.chat_template("tuned")))
    assert served == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" \
                     "<|start_header_id|>assistant<|end_header_id|>\n\n"


def test_generate_raw_prompts_a_base_model_with_plain_text(base_dir):
    from hone import api

    with pytest.raises(HoneError, match="no chat template"):
        api.generate("Order a pizza", model=str(base_dir), max_new_tokens=2)
    assert isinstance(api.generate("Order a pizza", model=str(base_dir), max_new_tokens=2, raw=True), str)


def test_eval_prompts_a_base_model_with_the_conversation_as_plain_text(base_dir, tmp_path):
    from hone import api
    from hone.data.template import plain_prompt

    question = [{"role": "user", "content": "Order a pizza"}]
    (tmp_path / "eval.jsonl").write_text(json.dumps({"messages": [*question, {"role": "assistant", "content": "ok"}]}))
    result = api.evaluate(tmp_path / "eval.jsonl", model=str(base_dir), max_new_tokens=3, progress=False)
    assert result.predictions == [api.generate(plain_prompt(question), model=str(base_dir), max_new_tokens=3, raw=True)]


def test_an_unknown_template_name_is_refused_with_the_known_ones():
    from hone.data.templates import resolve_chat_template

    with pytest.raises(HoneError, match="qwen3"):
        resolve_chat_template("qwen4")


def trained_prefix(tokenized) -> list[int]:
    first = next(t for t, label in enumerate(tokenized.labels) if label != IGNORE)
    return tokenized.input_ids[:first]


@pytest.mark.parametrize("reasoning, thinks", [("train", True), ("drop", False)])
def test_serving_renders_the_prompt_the_reply_was_trained_after(tmp_path, reasoning, thinks):
    """The artifact's template (thinking switch included) gives exactly the trained reply's prefix."""
    from transformers import AutoTokenizer

    tokenizer = apply_data_template(AutoTokenizer.from_pretrained(save_tiny_family("qwen3", tmp_path)),
                                    data_config(reasoning=reasoning))
    example = parse_record(REASONED)
    tokenized = tokenize_example(example, tokenizer, reasoning=reasoning)
    trained = tokenizer.decode([t for t in tokenized.labels if t != IGNORE])
    assert ("Two means 2." in trained) is thinks
    served = prompt_ids(example.messages[:-1], tokenizer, chat_template=tokenizer.chat_template)
    assert served == trained_prefix(tokenized)
    assert tokenizer.decode(served).endswith("<think>\n\n</think>\n\n") is not thinks
    # the other thinking mode renders a prompt this model was not trained after
    other = apply_data_template(AutoTokenizer.from_pretrained(tmp_path),
                                data_config(reasoning="drop" if thinks else "train"))
    assert prompt_ids(example.messages[:-1], other, chat_template=other.chat_template) != served


def test_reasoning_the_template_cannot_render_is_refused(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_tiny_family("llama3", tmp_path))
    with pytest.raises(HoneError, match="does not render the reasoning"):
        tokenize_example(parse_record(REASONED), tokenizer)
    assert tokenize_example(parse_record(REASONED), tokenizer, reasoning="drop").labels


def test_qwen_style_thinking_is_read_like_reasoning_content():
    record = {"messages": [REASONED["messages"][0], {"role": "assistant", "thinking": "Two means 2.", "content": "2"}]}
    assert parse_record(record).messages[1]["reasoning"] == "Two means 2."


EXPECTED_PROBLEMS = {"mistral": ["silently drops the system prompt"],
                     "qwen3": ["differs from its incremental prefixes"], "qwen3-moe": ["differs from its incremental prefixes"],
                     "gpt-oss": ["differs from its incremental prefixes"]}


@pytest.mark.parametrize("name", sorted(CHAT_TEMPLATES))
def test_template_problems_of_each_family_template(tiny_tokenizer, name):
    from hone.data.template_check import template_problems
    from hone.models.families import FAMILIES, tiny_family_tokenizer

    fam = next((f for f in FAMILIES.values() if f.template == name), None)
    tokenizer = tiny_family_tokenizer(fam) if fam else copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHAT_TEMPLATES[name]
    problems = template_problems(tokenizer)
    expected = EXPECTED_PROBLEMS.get(name, [])
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems)), problems


def test_bos_twice_and_an_unsound_mask_are_refused_naming_the_model(tmp_path):
    from transformers import AutoTokenizer

    from hone.data.template_check import check_template

    tokenizer = AutoTokenizer.from_pretrained(save_tiny_family("llama3", tmp_path))
    tokenizer.chat_template = "{{ bos_token }}" + CHAT_TEMPLATES["llama3"]
    with pytest.raises(HoneError, match="the chat template of my-model: it adds BOS twice"):
        check_template(tokenizer, "my-model", system=True)
    tokenizer.chat_template = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    with pytest.raises(HoneError, match="the chat template of my-model: it cannot yield a sound loss mask"):
        check_template(tokenizer, "my-model", system=True)


def test_data_check_reports_the_template_problems_of_a_model(tmp_path):
    import subprocess
    import sys

    model = save_tiny_family("mistral", tmp_path / "mistral")
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": REASONED["messages"][:1] + [
        {"role": "assistant", "content": "2"}]}) + "\n")
    out = subprocess.run([sys.executable, "-m", "hone", "data", "check", str(tmp_path / "d.jsonl"), "--model", str(model)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert f"chat template of {model}: it silently drops the system prompt" in out.stderr


def test_the_data_report_counts_the_replies_left_as_context(tmp_path):
    from transformers import AutoTokenizer

    from hone.data.prepare import prepare_data

    tokenizer = apply_data_template(AutoTokenizer.from_pretrained(save_tiny_family("qwen3", tmp_path / "m")),
                                    data_config())
    turns = [{"role": "user", "content": "One?"}, {"role": "assistant", "content": "1"},
             {"role": "user", "content": "Two?"}, {"role": "assistant", "content": "2"}]
    (tmp_path / "d.jsonl").write_text("\n".join([json.dumps({"messages": turns})] * 4) + "\n")
    prepared = prepare_data(data_config(train=str(tmp_path / "d.jsonl"), validation_fraction=0.0), tokenizer, seed=0)
    assert "4 earlier replies not trained" in prepared.summary()


def test_soft_capped_logits_are_refused_for_objectives_whose_losses_leave_them_out():
    from transformers import Gemma2Config

    from hone.models.families import check_trainable

    config = Gemma2Config(final_logit_softcapping=30.0)
    check_trainable(config, "sft")
    with pytest.raises(HoneError, match="gemma2 soft-caps its output logits"):
        check_trainable(config, "dpo")


@pytest.mark.parametrize("name, refused", [("mistral", True), ("smollm3", False), ("gemma3", False)])
def test_a_dropped_system_prompt_is_refused_per_conversation(tmp_path, name, refused):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(save_tiny_family(name, tmp_path))
    record = {"messages": [{"role": "system", "content": "Answer briefly. /no_think"}, *REASONED["messages"][:1],
                           {"role": "assistant", "content": "2"}]}
    example = parse_record(record)
    if refused:
        with pytest.raises(HoneError, match="silently drops the system prompt"):
            tokenize_example(example, tokenizer)
    else:
        assert tokenize_example(example, tokenizer).labels
