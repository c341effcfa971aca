"""Tiny random vision-language models of every family and small picture data sets made in the test."""

import json
import random

import pytest
import torch
from PIL import Image, ImageDraw

from hone.data.images import image_data_url
from hone.models.vision_families import VISION_FAMILIES, save_tiny_vlm

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Two cores shared by many processes: one thread per test process is the fastest here."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def vlm_dirs(tmp_path_factory):
    """family name -> a saved tiny model directory, built on first use."""
    root = tmp_path_factory.mktemp("vlms")
    built = {}

    def get(name):
        if name not in built:
            built[name] = save_tiny_vlm(name, root / name)
        return built[name]

    return get


def shape_picture(colour: str, seed: int) -> Image.Image:
    """A 32-pixel picture: a square of `colour` on grey at a position set by `seed`."""
    rng = random.Random(seed)
    image = Image.new("RGB", (32, 32), (128, 128, 128))
    x, y = rng.randrange(0, 12), rng.randrange(0, 12)
    ImageDraw.Draw(image).rectangle([x, y, x + 18, y + 18], fill=COLOURS[colour])
    return image


def colour_question(colour: str, seed: int) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_data_url(shape_picture(colour, seed))}},
                                        {"type": "text", "text": "What colour is the square?"}]}


def write_records(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def colour_files(tmp_path_factory):
    """(sft file, dpo file): 12 colour questions about generated pictures, answered / ranked."""
    root = tmp_path_factory.mktemp("colours")
    names = list(COLOURS)
    sft, dpo = [], []
    for i in range(12):
        colour = names[i % 3]
        question = colour_question(colour, i)
        sft.append({"messages": [question, {"role": "assistant", "content": colour}]})
        dpo.append({"messages": [question], "chosen": colour, "rejected": names[(i + 1) % 3]})
    return write_records(root / "sft.jsonl", sft), write_records(root / "dpo.jsonl", dpo)


FAMILIES = list(VISION_FAMILIES)
