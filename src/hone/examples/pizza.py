"""The demo task: turn a free-text pizza order into one fixed JSON schema.

`hone demo` fine-tunes a small model on `generate_orders` data and compares it with the same base
model given `prompted_messages` (precise instructions plus two worked examples). The generator is
seeded and pure; every order text fully determines its JSON:

    {"size": "small"|"medium"|"large", "crust": "thin"|"regular"|"stuffed",
     "toppings": [sorted names from TOPPINGS], "quantity": 1..4, "delivery": true|false}

An unmentioned crust is "regular", an unmentioned count is 1, and an order that says nothing about
delivery is for pickup (false). The size is always said (in one of several words). Toppings the
customer refuses ("hold the onions") are not in the list; "extra ham" is just "ham".
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SIZES = ("small", "medium", "large")
CRUSTS = ("thin", "regular", "stuffed")
TOPPINGS = (
    "bacon", "basil", "chicken", "ham", "jalapenos",
    "mushrooms", "olives", "onions", "pepperoni", "pineapple",
)  # fmt: skip
DEFAULTS = {"crust": "regular", "quantity": 1, "delivery": False}

SYSTEM_PROMPT = "Convert the pizza order to JSON."

# Words a customer may use; the first of each list is the canonical word, used about half the time.
_SIZE_WORDS = {
    "small": ["small", "personal", "personal-size", "10-inch"],
    "medium": ["medium", "12-inch", "medium-size", "medium-sized"],
    "large": ["large", "family-size", "14-inch", "big"],
}
_CRUST_BEFORE_NOUN = {  # "a large thin-crust pizza"
    "thin": ["thin-crust", "thin crust", "crispy thin-crust"],
    "regular": ["regular crust", "hand-tossed", "classic crust"],
    "stuffed": ["stuffed crust", "stuffed-crust", "cheese-stuffed crust"],
}
_CRUST_NOUNS = {  # "on a crispy thin base", "Crust: thin and crispy."
    "thin": ["thin crust", "crispy thin base", "thin and crispy crust", "thin base"],
    "regular": ["regular crust", "normal crust", "classic hand-tossed crust", "original crust"],
    "stuffed": ["stuffed crust", "cheese-stuffed crust"],
}
_TOPPING_WORDS = {  # list form: "with fresh mushrooms and ham"
    "bacon": ["bacon", "crispy bacon", "bacon bits"],
    "basil": ["basil", "fresh basil", "basil leaves"],
    "chicken": ["chicken", "grilled chicken", "chicken pieces"],
    "ham": ["ham", "smoked ham"],
    "jalapenos": ["jalapenos", "jalapeños", "jalapeno peppers", "sliced jalapenos"],
    "mushrooms": ["mushrooms", "fresh mushrooms", "sliced mushrooms"],
    "olives": ["olives", "black olives"],
    "onions": ["onions", "red onions", "onion"],
    "pepperoni": ["pepperoni", "spicy pepperoni"],
    "pineapple": ["pineapple", "pineapple chunks"],
}
_TOPPING_ADJECTIVES = {  # before the noun: "a large mushroom and onion pizza"
    "bacon": ["bacon"], "basil": ["basil"], "chicken": ["chicken", "grilled chicken"],
    "ham": ["ham"], "jalapenos": ["jalapeno"], "mushrooms": ["mushroom"],
    "olives": ["olive", "black olive"], "onions": ["onion", "red onion"],
    "pepperoni": ["pepperoni"], "pineapple": ["pineapple"],
}  # fmt: skip
_COUNT_WORDS = {1: ["a", "a", "one", "1", "a single"], 2: ["two", "2", "a couple of", "a pair of"],
                3: ["three", "3"], 4: ["four", "4"]}  # fmt: skip
_COUNT_OF_YOUR = {1: ["one", "1"], 2: ["two", "2", "a couple"], 3: ["three", "3"], 4: ["four", "4"]}
_COUNT_NAMES = {1: "one", 2: "two", 3: "three", 4: "four"}

_GREETINGS = ["Hi!", "Hi there.", "Hello.", "Hey!", "Good evening.", "Good afternoon.",
              "Hello, is this the pizza place?", "Hey, hope you're having a good day.",
              "Hi, I'd like to place an order.", "Evening!"]  # fmt: skip
_FILLERS = ["Um, ", "So, ", "Okay, so ", "Yeah, ", "Right, "]
_STATEMENT_LEADS = ["I'd like", "I want", "I'll have", "I would like to order", "Let me get",
                    "We'd like", "I'm after", "I need", "We'll take", "I'll take", "I'd love"]  # fmt: skip
_QUESTION_LEADS = ["Can I get", "Could I please order", "Could we get", "Can I order", "May I have",
                   "Would it be possible to get", "Could you make me", "Can you do"]  # fmt: skip
_ASIDES = ["It's for a movie night.", "We're celebrating a birthday tonight.", "Hope you're not too busy.",
           "Long day at work, so this is much needed.", "My friends are coming over.",
           "First time ordering from you.", "It's for the game tonight."]  # fmt: skip
_CLOSINGS = ["Thanks!", "Thank you.", "Cheers.", "Thanks so much.", "Much appreciated.",
             "That's all, thanks.", "That's everything.", "My name is {name}.",
             "Name on the order is {name}.", "Thanks, {name}."]  # fmt: skip
_NAMES = ["Sam", "Alex", "Priya", "Jordan", "Maria", "Chen", "Fatima", "Lucas", "Olivia", "Tom",
          "Noah", "Aisha", "Mateo", "Hannah", "Kenji", "Zoe"]  # fmt: skip
_STREETS = ["Elm", "Oak", "Maple", "Pine", "Cedar", "Main", "Park", "Lake", "Hill", "Church", "Mill",
            "River", "Station", "King", "Queen", "Willow", "Chestnut", "Spruce", "Walnut", "Sunset",
            "Harbor", "Market", "Spring"]  # fmt: skip
_STREET_KINDS = ["St", "Street", "Ave", "Avenue", "Road", "Lane", "Drive", "Court", "Way", "Place"]


def generate_orders(n: int, seed: int) -> list[dict]:
    """`n` orders with distinct texts, each `{"text": ..., "order": <canonical dict>}`.

    Deterministic for a seed, and a prefix of a longer run with the same seed.
    """
    rng = random.Random(seed)
    items: list[dict] = []
    seen: set[str] = set()
    while len(items) < n:
        order = random_order(rng)
        text = order_text(order, rng)
        if text not in seen:
            seen.add(text)
            items.append({"text": text, "order": order})
    return items


def random_order(rng: random.Random) -> dict:
    """One order in canonical form (key order and sorted toppings as in the schema)."""
    n_toppings = rng.choices([0, 1, 2, 3, 4], weights=[10, 25, 30, 25, 10])[0]
    return {
        "size": rng.choice(SIZES),
        "crust": rng.choices(CRUSTS, weights=[35, 35, 30])[0],
        "toppings": sorted(rng.sample(TOPPINGS, n_toppings)),
        "quantity": rng.choices([1, 2, 3, 4], weights=[45, 25, 15, 15])[0],
        "delivery": rng.random() < 0.5,
    }


def order_text(order: dict, rng: random.Random, min_words: int = 15, max_words: int = 45) -> str:
    """How a customer might write `order`: re-rendered until it is `min_words`..`max_words` long."""
    for _ in range(100):
        text = _render_order(order, rng)
        if min_words <= len(text.split()) <= max_words:
            return text
    return text


def order_json(order: dict) -> str:
    """The exact assistant answer for an order: `json.dumps` with default separators."""
    return json.dumps(order)


def to_chat(item: dict) -> dict:
    """A generated item as an OpenAI-style chat fine-tuning example."""
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": item["text"]},
            {"role": "assistant", "content": order_json(item["order"])},
        ]
    }


def write_dataset(out_dir: str | Path, *, train: int = 500, heldout: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """Write `train.jsonl` and `heldout.jsonl` (chat format) with no text in both; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = generate_orders(train + heldout, seed)  # texts are distinct, so the split is disjoint
    paths = (out / "train.jsonl", out / "heldout.jsonl")
    for path, part in zip(paths, (items[:train], items[train:])):
        lines = [json.dumps(to_chat(item), ensure_ascii=False) for item in part]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return paths


PROMPTED_SYSTEM_PROMPT = """\
You convert a customer's pizza order into JSON. Reply with one line of JSON and nothing else: no \
explanation, no code fence. Use exactly these keys in this order:
{"size": ..., "crust": ..., "toppings": [...], "quantity": ..., "delivery": ...}

- size: "small", "medium" or "large". "personal" and "10-inch" mean "small"; "12-inch" means \
"medium"; "family-size", "14-inch" and "big" mean "large".
- crust: "thin", "regular" or "stuffed". "crispy thin base" and "thin and crispy" mean "thin"; \
"classic", "normal", "original" and "hand-tossed" mean "regular"; "cheese-stuffed" means "stuffed". \
If the crust is not mentioned, use "regular".
- toppings: a list sorted alphabetically, using only these names: bacon, basil, chicken, ham, \
jalapenos, mushrooms, olives, onions, pepperoni, pineapple. Use the name even if the customer words \
it differently ("grilled chicken" is "chicken", "red onion" is "onions", "black olives" is \
"olives"). "extra ham" or "lots of ham" is just "ham". Leave out toppings the customer refuses \
("hold the onions", "no olives"). A plain cheese pizza or "no toppings" is [].
- quantity: the number of pizzas, an integer from 1 to 4 ("a couple of" and "a pair of" mean 2). \
If no number is given, use 1.
- delivery: true if the customer wants the order delivered; false if they will pick it up or do \
not say."""

_PROMPT_EXAMPLES = [  # hand-written; no generated text can equal them (no Birch Road, no "on my way home")
    (
        "Hey! Could I grab a personal pizza with crispy bacon and lots of jalapeños? "
        "I'll get it on my way home from work.",
        {"size": "small", "crust": "regular", "toppings": ["bacon", "jalapenos"], "quantity": 1, "delivery": False},
    ),
    (
        "Good evening. We would like three 14-inch stuffed crust pizzas topped with pineapple, ham "
        "and red onion, but no olives please. Deliver them to 48 Birch Road.",
        {"size": "large", "crust": "stuffed", "toppings": ["ham", "onions", "pineapple"], "quantity": 3,
         "delivery": True},
    ),
]  # fmt: skip


def prompted_messages(text: str) -> list[dict]:
    """The strongest prompt for an untuned model: the full schema, two worked examples, then `text`."""
    messages = [{"role": "system", "content": PROMPTED_SYSTEM_PROMPT}]
    for example_text, example_order in _PROMPT_EXAMPLES:
        messages.append({"role": "user", "content": example_text})
        messages.append({"role": "assistant", "content": order_json(example_order)})
    messages.append({"role": "user", "content": text})
    return messages


# ---- rendering: one order → one customer message -------------------------------------------------


def _render_order(order: dict, rng: random.Random) -> str:
    """Greeting, the order itself (conversational or as a form), an aside, a closing: each optional."""
    parts = []
    if rng.random() < 0.55:
        parts.append(rng.choice(_GREETINGS))
    parts.append(_as_form(order, rng) if rng.random() < 0.12 else _as_conversation(order, rng))
    if rng.random() < 0.15:
        parts.append(rng.choice(_ASIDES))
    if rng.random() < 0.55:
        parts.append(rng.choice(_CLOSINGS).format(name=rng.choice(_NAMES)))
    return " ".join(parts)


def _as_conversation(order: dict, rng: random.Random) -> str:
    """One main sentence naming the pizzas; crust, toppings and delivery inline or as extra sentences."""
    count, toppings = order["quantity"], order["toppings"]
    it = "it" if count == 1 else "them"
    said_crust = order["crust"] != "regular" or rng.random() < 0.45
    crust_at = rng.choice(["before", "after", "sentence"]) if said_crust else None
    toppings_at = rng.choice(["before", "after", "sentence"])
    if toppings_at == "before" and len(toppings) > 3:
        toppings_at = "after"
    said_delivery = order["delivery"] or rng.random() < 0.55
    delivery_at = rng.choice(["after", "sentence"]) if said_delivery else None
    refused = _refused_topping(toppings, rng)

    question = rng.random() < 0.45
    lead = rng.choice(_QUESTION_LEADS if question else _STATEMENT_LEADS)
    if rng.random() < 0.15:
        lead = rng.choice(_FILLERS) + (lead if lead.startswith("I") else lead[0].lower() + lead[1:])
    crust_words = _synonym(rng, _CRUST_BEFORE_NOUN[order["crust"]]) if crust_at == "before" else None
    topping_words = _toppings_before_noun(toppings, rng) if toppings_at == "before" else None
    main = f"{lead} {_pizzas_phrase(order, crust_words, topping_words, rng)}"
    if crust_at == "after":
        article = "a " if count == 1 and rng.random() < 0.6 else ""
        main += f" {rng.choice(['on', 'with'])} {article}{_synonym(rng, _CRUST_NOUNS[order['crust']])}"
    if toppings_at == "after":
        main += " " + _toppings_clause(toppings, it, rng)
        if refused and rng.random() < 0.5:
            main += f", but {rng.choice(['hold the', 'no'])} {_synonym(rng, _TOPPING_WORDS[refused])}"
            refused = None
    if delivery_at == "after":
        main += " " + _delivery_clause(order["delivery"], rng)
    main += rng.choice(["?", ", please?"] if question else [".", "!", ", please.", " please."])

    sentences = []
    if crust_at == "sentence":
        sentences.append(_crust_sentence(order["crust"], it, rng))
    if toppings_at == "sentence":
        sentences.append(_toppings_sentence(toppings, it, rng))
    if refused:
        sentences.append(_refusal_sentence(refused, rng))
    if delivery_at == "sentence":
        sentences.append(_delivery_sentence(order["delivery"], it, rng))
    rng.shuffle(sentences)
    return " ".join([main] + sentences)


def _pizzas_phrase(order: dict, crust_words: str | None, topping_words: str | None, rng: random.Random) -> str:
    """'two large thin-crust ham pizzas', 'one of your 12-inch pizzas' or '3x big pepperoni pizza'."""
    count = order["quantity"]
    describing = " ".join(w for w in [_synonym(rng, _SIZE_WORDS[order["size"]]), crust_words, topping_words] if w)
    noun = "pizza" if rng.random() < 0.8 else "pie"
    form = rng.choices(["count", "of your", "times"], weights=[70, 15, 15])[0]
    if form == "times":
        return f"{count}x {describing} {noun}"
    if form == "of your":
        return f"{rng.choice(_COUNT_OF_YOUR[count])} of your {describing} {noun}s"
    return f"{rng.choice(_COUNT_WORDS[count])} {describing} {noun}{'s' if count > 1 else ''}"


def _toppings_before_noun(toppings: list[str], rng: random.Random) -> str:
    if not toppings:
        return rng.choice(["cheese", "plain cheese"])
    words = [rng.choice(_TOPPING_ADJECTIVES[t]) for t in toppings]
    rng.shuffle(words)
    return _join(words, rng)


def _toppings_list(toppings: list[str], rng: random.Random) -> str:
    """The toppings in random order and words, some as 'extra X' or 'lots of X'."""
    words = []
    for topping in toppings:
        word = _synonym(rng, _TOPPING_WORDS[topping])
        if rng.random() < 0.1:
            word = rng.choice(["extra ", "lots of "]) + word
        words.append(word)
    rng.shuffle(words)
    return _join(words, rng)


def _toppings_clause(toppings: list[str], it: str, rng: random.Random) -> str:
    if not toppings:
        return rng.choice(["with no toppings", "with just cheese", f"with nothing on {it}", "with cheese only"])
    listed = _toppings_list(toppings, rng)
    templates = ["with {}", "with {}", "topped with {}", "with {} on top"]
    return rng.choice(templates + (["loaded with {}"] if len(toppings) > 1 else [])).format(listed)


def _toppings_sentence(toppings: list[str], it: str, rng: random.Random) -> str:
    if not toppings:
        return rng.choice(["No toppings, just cheese.", "Just plain cheese, please.", "Toppings: none.",
                           "Nothing on top, just cheese."])  # fmt: skip
    templates = ["Toppings: {}.", "For toppings, {} please.", "I'd like {} on " + it + ".",
                 "Put {} on " + it + ", please.", "Could you add {}?", "Top " + it + " with {}."]  # fmt: skip
    return _capitalized(rng.choice(templates).format(_toppings_list(toppings, rng)))


def _refused_topping(toppings: list[str], rng: random.Random) -> str | None:
    """Now and then, a topping the customer explicitly does not want (never one that is ordered)."""
    if not toppings or rng.random() >= 0.08:
        return None
    return rng.choice([t for t in TOPPINGS if t not in toppings])


def _refusal_sentence(topping: str, rng: random.Random) -> str:
    word = _synonym(rng, _TOPPING_WORDS[topping])
    return rng.choice(["Please hold the {}.", "No {}, please.", "Hold the {}.", "And please, no {}."]).format(word)


def _crust_sentence(crust: str, it: str, rng: random.Random) -> str:
    noun = _synonym(rng, _CRUST_NOUNS[crust])
    templates = ["Make " + it + " {}.", "{}, please.", "I'd like the {}.", "For the crust, {} please.",
                 "Crust: {}."]  # fmt: skip
    return _capitalized(rng.choice(templates).format(noun))


def _delivery_clause(delivery: bool, rng: random.Random) -> str:
    if not delivery:
        return rng.choice(["for pickup", "for collection", "for carry-out", "to pick up", "to collect"])
    if rng.random() < 0.15:
        return "for delivery"
    return rng.choice(["for delivery to {}", "to be delivered to {}", "delivered to {}"]).format(_address(rng))


def _delivery_sentence(delivery: bool, it: str, rng: random.Random) -> str:
    if not delivery:
        return rng.choice([f"I'll pick {it} up.", f"I'll come by and collect {it}.", f"I'll swing by to grab {it}.",
                           "Pickup, please.", "It's for pickup.", f"No need for delivery, I'll pick {it} up myself.",
                           f"I'll collect {it} from the store."])  # fmt: skip
    if rng.random() < 0.15:
        return rng.choice(["Delivery, please.", f"Please have {it} delivered."])
    templates = [f"Please deliver {it} to {{}}.", f"Can you deliver {it} to {{}}?", "It's for delivery to {}.",
                 "Delivery to {}, please.", f"I need {it} delivered to {{}}.", f"Could you bring {it} to {{}}?",
                 f"Send {it} over to {{}}, please."]  # fmt: skip
    return rng.choice(templates).format(_address(rng))


def _as_form(order: dict, rng: random.Random) -> str:
    """The order as labelled fields, e.g. 'Order details: Size: large; Crust: thin; Quantity: 2; ...'."""
    fields = []
    if order["crust"] != "regular" or rng.random() < 0.6:
        fields.append(f"Crust: {_synonym(rng, _CRUST_NOUNS[order['crust']])}")
    toppings = order["toppings"]
    listed = _toppings_list(toppings, rng) if toppings else rng.choice(["none", "just cheese"])
    fields.append(f"Toppings: {listed}")
    if order["quantity"] > 1 or rng.random() < 0.5:
        label = rng.choice(["Quantity", "Qty", "How many"])
        fields.append(f"{label}: {rng.choice([str(order['quantity']), _COUNT_NAMES[order['quantity']]])}")
    if order["delivery"]:
        fields.append(rng.choice(["Delivery to {}", "Delivery: yes, to {}", "Deliver to: {}"]).format(_address(rng)))
    elif rng.random() < 0.6:
        fields.append(rng.choice(["Pickup", "Delivery: no, pickup", "Collection: I'll pick it up"]))
    rng.shuffle(fields)
    fields.insert(0, f"Size: {_synonym(rng, _SIZE_WORDS[order['size']])}")
    intro = rng.choice(["I would like to place an order.", "Order details:", "Here's my order.", "New order please."])
    separator = rng.choice([". ", "; "])
    return f"{intro} {separator.join(fields)}."


def _address(rng: random.Random) -> str:
    street = f"{rng.randint(1, 999)} {rng.choice(_STREETS)} {rng.choice(_STREET_KINDS)}"
    if rng.random() < 0.2:
        street += f", {rng.choice(['apartment', 'flat', 'unit'])} {rng.randint(1, 30)}"
    return street


def _synonym(rng: random.Random, words: list[str]) -> str:
    """The first (canonical) word about half the time, otherwise one of the others."""
    if len(words) == 1 or rng.random() < 0.5:
        return words[0]
    return rng.choice(words[1:])


def _join(words: list[str], rng: random.Random) -> str:
    """'a', 'a and b', 'a, b and c' (or '&', 'plus', an Oxford comma)."""
    if len(words) == 1:
        return words[0]
    last = rng.choices([" and ", ", and ", " & ", " plus "], weights=[60, 15, 15, 10])[0]
    if len(words) == 2 and last == ", and ":
        last = " and "
    return ", ".join(words[:-1]) + last + words[-1]


def _capitalized(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]
