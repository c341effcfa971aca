"""The vision demo task: count the shapes in a small synthetic picture.

Each picture is `SIZE` x `SIZE` pixels on a plain light background, with 1 to 4 shapes (circle,
square, triangle) in four colours, drawn with Pillow in separate cells of a 3 x 3 grid so no two
shapes touch. The generator is seeded and pure; each picture fully determines its answers:

    "How many shapes are in the picture?"  ->  "1" .. "4"
    "What colour is the triangle?"         ->  "red" | "green" | "blue" | "yellow"   (asked only
                                               when exactly one shape of that kind is drawn)

Records are OpenAI chat fine-tuning examples with an image content part (a base64 PNG `data:` URL),
the shape of OpenAI's vision fine-tuning files.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from hone.data.images import bytes_data_url, load_image
from hone.models.load import resolve_model

SIZE = 48
GRID = 3  # cells per side; one shape per cell at most
KINDS = ("circle", "square", "triangle")
COLOURS = {"red": (215, 40, 40), "green": (30, 150, 60), "blue": (40, 80, 215), "yellow": (225, 185, 20)}
BACKGROUNDS = ((255, 255, 255), (236, 236, 236), (246, 240, 226), (228, 238, 246))
MAX_SHAPES = 4
COUNT_QUESTION = "How many shapes are in the picture?"
QUESTION_KINDS = ("count", "colour")


def generate_pictures(n: int, seed: int, questions: tuple[str, ...] = ("count",)) -> list[dict]:
    """`n` distinct pictures, each `{"background", "shapes", "question", "answer"}`.

    `shapes` lists `{"kind", "colour", "box"}` (box = left, top, right, bottom in pixels). The question
    kind cycles through `questions` where the picture allows it (a colour question needs a shape kind
    drawn exactly once). Deterministic for a seed, and a prefix of a longer run with the same seed.
    """
    unknown = set(questions) - set(QUESTION_KINDS)
    if unknown or not questions:
        raise ValueError(f"question kinds must be among {QUESTION_KINDS}, got {questions}")
    rng = random.Random(seed)
    items: list[dict] = []
    seen: set[str] = set()
    while len(items) < n:
        picture = random_picture(rng)
        key = json.dumps(picture)
        if key in seen:
            continue
        seen.add(key)
        question, answer = _question(picture, questions[len(items) % len(questions)], rng)
        items.append(picture | {"question": question, "answer": answer})
    return items


def random_picture(rng: random.Random) -> dict:
    """1..MAX_SHAPES shapes of random kind, colour, size and position, each in its own grid cell."""
    count = rng.randint(1, MAX_SHAPES)
    cells = rng.sample(range(GRID * GRID), count)
    cell = SIZE // GRID
    shapes = []
    for index in cells:
        side = rng.randint(cell * 5 // 8, cell - 2)  # leaves >= 2 px between neighbouring shapes
        left = (index % GRID) * cell + rng.randint(1, cell - side - 1)
        top = (index // GRID) * cell + rng.randint(1, cell - side - 1)
        shapes.append({"kind": rng.choice(KINDS), "colour": rng.choice(list(COLOURS)),
                       "box": [left, top, left + side - 1, top + side - 1]})
    return {"background": list(rng.choice(BACKGROUNDS)), "shapes": shapes}


def render(picture: dict) -> Image.Image:
    """The picture as an RGB image (no anti-aliasing: every pixel is the background or one shape's colour)."""
    image = Image.new("RGB", (SIZE, SIZE), tuple(picture["background"]))
    draw = ImageDraw.Draw(image)
    for shape in picture["shapes"]:
        fill = COLOURS[shape["colour"]]
        left, top, right, bottom = shape["box"]
        if shape["kind"] == "circle":
            draw.ellipse((left, top, right, bottom), fill=fill)
        elif shape["kind"] == "square":
            draw.rectangle((left, top, right, bottom), fill=fill)
        else:
            draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=fill)
    return image


def png_data_url(image: Image.Image) -> str:
    """A `data:image/png;base64,...` URL of the image (palette PNG: the pictures have five colours)."""
    buffer = io.BytesIO()
    image.quantize(colors=8, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        buffer, format="PNG", optimize=True)
    return bytes_data_url(buffer.getvalue(), "image/png")


def letter_picture(url: str, cell: int = 3) -> str:
    """A picture as lines of letters, one per `cell` x `cell` pixels: the initial of the shape colour
    (R, G, B, Y) most of the block's shape pixels are nearest to, or `.` where the block is background
    (lighter than every shape colour)."""
    image = load_image(url, field="image")
    palette = {name[0].upper(): rgb for name, rgb in COLOURS.items()} | {".": (245, 245, 245)}

    def nearest(pixel) -> str:
        return min(palette, key=lambda k: sum((a - b) ** 2 for a, b in zip(palette[k], pixel)))

    rows = []
    for top in range(0, image.height - cell + 1, cell):
        row = ""
        for left in range(0, image.width - cell + 1, cell):
            letters = [nearest(image.getpixel((left + x, top + y))) for y in range(cell) for x in range(cell)]
            shape = [letter for letter in letters if letter != "."]
            row += max(set(shape), key=shape.count) if shape else "."
        rows.append(row)
    return "\n".join(rows)


def to_chat(item: dict) -> dict:
    """A generated item as an OpenAI vision chat fine-tuning example: question and picture, then the answer."""
    return {
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": item["question"]},
                {"type": "image_url", "image_url": {"url": png_data_url(render(item))}},
            ]},
            {"role": "assistant", "content": item["answer"]},
        ]
    }  # fmt: skip


def write_dataset(out_dir: str | Path, *, train: int = 400, heldout: int = 100, seed: int = 0,
                  questions: tuple[str, ...] = ("count",)) -> tuple[Path, Path]:
    """Write `train.jsonl` and `heldout.jsonl` (chat format, no picture in both); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = generate_pictures(train + heldout, seed, questions)  # pictures are distinct: the split is disjoint
    paths = (out / "train.jsonl", out / "heldout.jsonl")
    for path, part in zip(paths, (items[:train], items[train:])):
        path.write_text("".join(json.dumps(to_chat(item)) + "\n" for item in part), encoding="utf-8")
    return paths


def _question(picture: dict, kind: str, rng: random.Random) -> tuple[str, str]:
    """A question of `kind` about the picture, and its answer; a count question where no colour one fits."""
    if kind == "colour":
        kinds = [shape["kind"] for shape in picture["shapes"]]
        single = [k for k in KINDS if kinds.count(k) == 1]
        if single:
            asked = rng.choice(single)
            return f"What colour is the {asked}?", picture["shapes"][kinds.index(asked)]["colour"]
    return COUNT_QUESTION, str(len(picture["shapes"]))


# ---- the demo model: SmolLM2 (pretrained) behind a small vision tower trained here ------------------

# One 16 px patch per grid cell: 3 x 3 patches, and no pixel shuffle, so 9 image tokens per picture.
VISION_SETTINGS = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "image_size": SIZE, "patch_size": SIZE // GRID}  # fmt: skip
SCALE_FACTOR = 1
IMAGE_SPECIAL_TOKENS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>")

# ChatML as the default model writes it (without its default system prompt, to keep sequences short),
# with content parts: an image part becomes `<image>`, which the processor expands into the picture's tokens.
VISION_CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ '<image>' }}{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def demo_vlm(language_model: str | None, *, seed: int = 0, vision: dict | None = None,
             scale_factor: int = SCALE_FACTOR):
    """(model, processor): an Idefics3 (SmolVLM's architecture) whose text model is `language_model`.

    `language_model` is a transformers directory of a Llama-family causal LM (the default model's
    converted directory); its weights and tokenizer are kept. The vision tower (`VISION_SETTINGS`
    updated by `vision`) and the projector are randomly initialised from `seed`: nothing pretrained
    sees the pictures. `language_model=None` builds a randomly initialised small text model instead,
    on the default model's tokenizer.
    """
    import torch
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, Idefics3Config,
                              Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil, Idefics3Processor)

    tokenizer = AutoTokenizer.from_pretrained(language_model or resolve_model("smollm2-135m-instruct").path)
    tokenizer.add_special_tokens({"additional_special_tokens": list(IMAGE_SPECIAL_TOKENS)})
    text_config = AutoConfig.from_pretrained(language_model) if language_model else _small_text_config(tokenizer)
    text_config.vocab_size = len(tokenizer)
    vision_config = VISION_SETTINGS | (vision or {})
    config = Idefics3Config(vision_config=vision_config, text_config=text_config.to_dict(), scale_factor=scale_factor,
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=text_config.tie_word_embeddings)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    if language_model:
        pretrained = AutoModelForCausalLM.from_pretrained(language_model, dtype=torch.float32)
        pretrained.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.model.text_model.load_state_dict(pretrained.model.state_dict())
        model.lm_head.load_state_dict(pretrained.lm_head.state_dict())
        if config.tie_word_embeddings:
            model.tie_weights()
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": SIZE},
                                                max_image_size={"longest_edge": SIZE})
    tokens = ((SIZE // vision_config["patch_size"]) // scale_factor) ** 2
    processor = Idefics3Processor(image_processor, tokenizer, image_seq_len=tokens,
                                  chat_template=VISION_CHATML_TEMPLATE)
    tokenizer.chat_template = VISION_CHATML_TEMPLATE
    return model, processor


def _small_text_config(tokenizer):
    """A 2-layer Llama of width 128 on the tokenizer's vocabulary, embeddings tied to the output head."""
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def build_demo_vlm(path: str | Path, language_model: str | None, *, seed: int = 0) -> Path:
    """Write `demo_vlm(language_model)` as a model directory hone loads like any other (config, weights,
    processor, tokenizer, chat template); generation stops at `<|im_end|>`."""
    model, processor = demo_vlm(language_model, seed=seed)
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
