"""Every tiny vision-language family: it loads with its processor, the loss mask keeps assistant text
only (never an image token), and a batch gives the loss of its examples one by one."""

import pytest
import torch

from hone.data.batching import Batching
from hone.data.formats import parse_record
from hone.data.template import IGNORE, tokenize_example
from hone.errors import HoneError
from hone.models.load import load_model, load_tokenizer
from hone.models.vision import image_token_id, is_vision, module_part
from hone.models.vision_families import VISION_FAMILIES
from hone.objectives.sft import SFT
from tests.vision.conftest import FAMILIES, colour_question


def example(colour, seed, reply, images=1, system=None):
    question = colour_question(colour, seed)
    question["content"] = question["content"][:1] * images + question["content"][1:]
    messages = ([{"role": "system", "content": system}] if system else []) + [question]
    record = parse_record({"messages": [*messages, {"role": "assistant", "content": reply}]})
    record.where = "test.jsonl:1"
    return record


@pytest.fixture(scope="module")
def loaded(vlm_dirs):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(str(vlm_dirs(name)))
        return cache[name]

    return get


@pytest.mark.parametrize("family", FAMILIES)
def test_the_loss_mask_keeps_assistant_text_and_no_image_token(loaded, family):
    model, tokenizer, _ = loaded(family)
    assert is_vision(model.config) and type(model).__name__.endswith("ForConditionalGeneration")
    fam = VISION_FAMILIES[family]
    tokenized = tokenize_example(example("red", 0, "a red square", images=2), tokenizer)
    image_id = image_token_id(model.config)
    assert tokenized.input_ids.count(image_id) == 2 * fam.tokens_per_image
    targets = [t for t, label in zip(tokenized.input_ids, tokenized.labels) if label != IGNORE]
    assert image_id not in targets
    assert tokenizer.decode(targets).strip() == f"a red square{fam.end_of_turn}"
    assert tokenized.image_tokens >= 2 * fam.tokens_per_image and len(tokenized.images) == 2


@pytest.mark.parametrize("family", FAMILIES)
def test_a_batch_gives_the_loss_of_its_examples_one_by_one(loaded, family):
    model, tokenizer, _ = loaded(family)
    text_only = parse_record({"messages": [{"role": "user", "content": "What colour is the sky?"},
                                           {"role": "assistant", "content": "blue"}]})
    examples = [tokenize_example(example("red", 1, "red"), tokenizer),
                tokenize_example(example("blue", 2, "a blue square, in the corner", images=2), tokenizer),
                tokenize_example(text_only, tokenizer), tokenize_example(text_only, tokenizer)]
    sft = SFT(1024)
    packing = Batching(tokenizer.pad_token_id, 512, packing=True)
    batch = sft.collate(examples, packing)
    assert batch["input_ids"].shape[0] == 4  # beside images, every example has a row of its own
    assert "pixel_values" in batch["model_inputs"]
    with torch.no_grad():
        together, _ = sft.loss(model, batch)
        alone = [sft.loss(model, sft.collate([e], packing))[0] for e in examples]
    torch.testing.assert_close(together, sum(alone), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_part_of_the_model_is_named(loaded, family):
    model, _, _ = loaded(family)
    parts = {module_part(name) for name, _ in model.named_parameters()}
    assert parts == {"language_model", "projector", "vision_tower"}


def test_a_text_only_model_refuses_images(tiny_model_dir):
    with pytest.raises(HoneError, match="no vision tower"):
        tokenize_example(example("red", 0, "red"), load_tokenizer(str(tiny_model_dir)))


def test_truncation_never_cuts_an_image(loaded):
    _, tokenizer, _ = loaded("llava")
    record = example("red", 0, "red " * 20)
    whole = tokenize_example(record, tokenizer)
    cut = tokenize_example(record, tokenizer, max_length=whole.images_end + 2)
    assert cut.truncated and len(cut.input_ids) == whole.images_end + 2
    with pytest.raises(HoneError, match="would cut an image"):
        tokenize_example(record, tokenizer, max_length=whole.images_end - 1)


def test_data_check_counts_image_tokens_and_truncation(loaded, tmp_path):
    from hone.data.report import check_file
    from tests.vision.conftest import write_records

    _, tokenizer, _ = loaded("llava")
    per_image = VISION_FAMILIES["llava"].tokens_per_image
    short = {"messages": [colour_question("red", 0), {"role": "assistant", "content": "red"}]}
    two = colour_question("blue", 1)
    two["content"] = two["content"][:1] * 2 + two["content"][1:]
    long_reply = {"messages": [two, {"role": "assistant", "content": "blue " * 40}]}
    three = colour_question("green", 2)
    three["content"] = three["content"][:1] * 3 + three["content"][1:]
    too_many_tokens = {"messages": [three, {"role": "assistant", "content": "green"}]}
    path = write_records(tmp_path / "check.jsonl", [short, long_reply, too_many_tokens])
    report = check_file(path, tokenizer, max_length=3 * per_image)
    assert report.image_token_stats["min"] == per_image and report.image_token_stats["max"] == 2 * per_image
    assert [line for line, _ in report.truncated] == [2]
    assert [(issue.line, "would have to cut an image" in issue.message) for issue in report.issues] == [(3, True)]
    rendered = report.render()
    assert f"image tokens per example: min {per_image}, mean {1.5 * per_image:.1f}, max {2 * per_image}" in rendered


def test_prompts_with_images_are_checked_and_never_prompted_as_ids_alone(loaded, tmp_path):
    from hone.data.report import check_file
    from hone.data.template import prompt_ids
    from tests.vision.conftest import write_records

    _, tokenizer, _ = loaded("qwen2.5-vl")
    record = {"messages": [colour_question("red", 0)], "answer": "red"}  # an eval task's prompt
    report = check_file(write_records(tmp_path / "eval.jsonl", [record]), tokenizer)
    assert report.ok and report.formats == {"graded_prompt": 1} and report.target_tokens == 0
    assert report.image_token_stats["max"] == VISION_FAMILIES["qwen2.5-vl"].tokens_per_image
    with pytest.raises(HoneError, match="holds images"):
        prompt_ids(parse_record(record).messages, tokenizer)
