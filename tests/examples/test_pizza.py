import json
import re
import subprocess
import sys

import pytest

from hone.evaluate.metrics import json_fields
from hone.examples.pizza import (
    SYSTEM_PROMPT,
    TOPPINGS,
    generate_orders,
    order_json,
    prompted_messages,
    to_chat,
    write_dataset,
)

# Written independently of the generator's tables: what a reader would accept as saying each value.
SIZE_WORDS = {
    "small": r"small|personal|10-inch",
    "medium": r"medium|12-inch",
    "large": r"large|family-size|14-inch|big",
}
CRUST_WORDS = {"thin": r"thin", "stuffed": r"stuffed", "regular": r"regular|classic|normal|original|hand-tossed"}
TOPPING_STEMS = {t: t.rstrip("s") for t in TOPPINGS} | {"jalapenos": "jalape"}
COUNT_WORDS = {2: r"two|2x?|couple|pair", 3: r"three|3x?", 4: r"four|4x?"}
DELIVERY_WORDS = r"deliver|bring|send"


def mentions(pattern: str, text: str) -> bool:
    return re.search(rf"\b(?:{pattern})", text, re.IGNORECASE) is not None


@pytest.fixture(scope="module")
def items():
    return generate_orders(300, seed=0)


def test_same_seed_same_orders_and_other_seed_differs():
    assert generate_orders(20, seed=3) == generate_orders(20, seed=3)
    assert generate_orders(20, seed=3) != generate_orders(20, seed=4)
    assert generate_orders(30, seed=3)[:20] == generate_orders(20, seed=3)


def test_orders_are_canonical(items):
    for item in items:
        order = item["order"]
        assert list(order) == ["size", "crust", "toppings", "quantity", "delivery"]
        assert order["size"] in SIZE_WORDS and order["crust"] in CRUST_WORDS
        assert order["toppings"] == sorted(set(order["toppings"])) and set(order["toppings"]) <= set(TOPPINGS)
        assert order["quantity"] in (1, 2, 3, 4) and isinstance(order["delivery"], bool)


def test_texts_are_distinct_and_15_to_45_words(items):
    texts = [item["text"] for item in items]
    assert len(set(texts)) == len(texts)
    assert all(15 <= len(text.split()) <= 45 for text in texts)


def test_text_says_the_size_and_no_other(items):
    for item in items:
        said = {size for size, words in SIZE_WORDS.items() if mentions(words, item["text"])}
        assert said == {item["order"]["size"]}, item


def test_text_says_the_crust_unless_it_is_the_default(items):
    for item in items:
        said = {crust for crust, words in CRUST_WORDS.items() if mentions(words, item["text"])}
        expected = {item["order"]["crust"]}
        assert said == expected or (not said and expected == {"regular"}), item


def test_text_mentions_every_topping_and_refuses_any_other(items):
    for item in items:
        text, toppings = item["text"], item["order"]["toppings"]
        for topping in TOPPINGS:
            mentioned = mentions(TOPPING_STEMS[topping], text)
            if topping in toppings:
                assert mentioned, (topping, item)
            elif mentioned:  # a refusal: "hold the onions", "no onions"
                assert mentions(rf"(hold the|no) (\w+ )?{TOPPING_STEMS[topping]}", text), (topping, item)
        if not toppings:
            assert mentions(r"cheese|no toppings|nothing on|toppings: none", text), item


def test_text_says_the_quantity(items):
    for item in items:
        text, quantity = item["text"], item["order"]["quantity"]
        said = {q for q, words in COUNT_WORDS.items() if mentions(words + r")(?![\w-]", text)}
        # "2" may also appear inside an address, so only require the right count to be said
        if quantity == 1:
            assert not any(mentions(COUNT_WORDS[q].split("|")[0], text) for q in (2, 3, 4)), item
            assert not mentions(r"couple|pair", text), item
        else:
            assert quantity in said, item


def test_text_says_delivery_or_not(items):
    for item in items:
        text = item["text"]
        if item["order"]["delivery"]:
            assert mentions(DELIVERY_WORDS, text), item
        else:
            assert not mentions(DELIVERY_WORDS, text) or mentions(r"no need for delivery|delivery: no", text), item


def test_order_json_is_plain_json_dumps_and_scores_perfectly(items):
    order = items[0]["order"]
    assert order_json(order) == json.dumps(order)
    assert order_json({"size": "small", "crust": "thin", "toppings": ["ham"], "quantity": 2, "delivery": True}) == (
        '{"size": "small", "crust": "thin", "toppings": ["ham"], "quantity": 2, "delivery": true}'
    )
    for item in items:
        answer = order_json(item["order"])
        assert json_fields(answer, answer) == {"json_valid": 1.0, "field_accuracy": 1.0, "exact_match": 1.0}


def test_to_chat_is_system_user_assistant(items):
    chat = to_chat(items[0])
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant"]
    assert chat["messages"][0]["content"] == SYSTEM_PROMPT
    assert chat["messages"][1]["content"] == items[0]["text"]
    assert json.loads(chat["messages"][2]["content"]) == items[0]["order"]


def test_write_dataset_writes_disjoint_chat_jsonl(tmp_path):
    train_path, heldout_path = write_dataset(tmp_path / "pizza", train=40, heldout=10, seed=1)
    assert (train_path.name, heldout_path.name) == ("train.jsonl", "heldout.jsonl")
    parts = [[json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
             for path in (train_path, heldout_path)]
    assert [len(part) for part in parts] == [40, 10]
    for part in parts:
        for example in part:
            assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
            json.loads(example["messages"][2]["content"])
    train_texts, heldout_texts = ({ex["messages"][1]["content"] for ex in part} for part in parts)
    assert not train_texts & heldout_texts
    assert write_dataset(tmp_path / "again", train=40, heldout=10, seed=1)[0].read_bytes() == train_path.read_bytes()


def test_prompted_messages_explain_schema_then_two_examples_then_the_order(items):
    text = items[0]["text"]
    messages = prompted_messages(text)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    system = messages[0]["content"]
    for word in ["JSON", "small", "medium", "large", "thin", "regular", "stuffed", *TOPPINGS]:
        assert word in system
    assert messages[-1]["content"] == text
    for answer in (messages[2], messages[4]):
        assert list(json.loads(answer["content"])) == ["size", "crust", "toppings", "quantity", "delivery"]
    # the worked examples are not in the data the model is trained or scored on
    example_texts = {messages[1]["content"], messages[3]["content"]}
    assert not example_texts & {item["text"] for item in generate_orders(600, seed=0)}


def test_module_imports_without_torch():
    code = "import sys, hone.examples.pizza, hone.evaluate.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
