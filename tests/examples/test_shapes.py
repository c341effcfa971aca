"""The shape-counting demo data: deterministic, decodable pictures whose answers match what is drawn."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hone.examples.shapes import COLOURS, COUNT_QUESTION, SIZE, generate_pictures, to_chat, write_dataset

REPO = Path(__file__).resolve().parents[2]


def decode(record: dict) -> Image.Image:
    url = record["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    image.verify()  # a corrupt PNG fails here
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def colour_regions(image: Image.Image) -> list[tuple[tuple[int, int, int], int]]:
    """(colour, pixel count) of each 4-connected region that is not the corner pixel's colour."""
    pixels, (width, height) = image.load(), image.size
    background, seen, regions = pixels[0, 0], set(), []
    for start in ((x, y) for y in range(height) for x in range(width)):
        if start in seen or pixels[start] == background:
            continue
        colour, stack, size = pixels[start], [start], 0
        seen.add(start)
        while stack:
            x, y = stack.pop()
            size += 1
            for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if 0 <= nxt[0] < width and 0 <= nxt[1] < height and nxt not in seen and pixels[nxt] == colour:
                    seen.add(nxt)
                    stack.append(nxt)
        regions.append((colour, size))
    return regions


@pytest.fixture(scope="module")
def records():
    return [to_chat(item) for item in generate_pictures(120, seed=3, questions=("count", "colour"))]


def test_same_seed_same_files_and_other_seed_differs(tmp_path):
    first = [p.read_bytes() for p in write_dataset(tmp_path / "a", train=30, heldout=10, seed=1)]
    again = [p.read_bytes() for p in write_dataset(tmp_path / "b", train=30, heldout=10, seed=1)]
    other = [p.read_bytes() for p in write_dataset(tmp_path / "c", train=30, heldout=10, seed=2)]
    assert first == again and first != other
    assert [len(b.splitlines()) for b in first] == [30, 10]


def test_train_and_heldout_share_no_picture(tmp_path):
    train, heldout = write_dataset(tmp_path, train=150, heldout=50, seed=0)
    urls = [{json.loads(line)["messages"][0]["content"][1]["image_url"]["url"] for line in p.read_text().splitlines()}
            for p in (train, heldout)]
    assert len(urls[0]) == 150 and len(urls[1]) == 50 and not urls[0] & urls[1]


def test_count_answers_match_the_regions_drawn(records):
    counts = [r for r in records if r["messages"][0]["content"][0]["text"] == COUNT_QUESTION]
    assert len(counts) >= 50
    answers = set()
    for record in counts:
        image = decode(record)
        assert image.size == (SIZE, SIZE)
        regions = colour_regions(image)
        assert all(size >= 12 for _, size in regions)  # a shape, not a stray pixel
        assert str(len(regions)) == record["messages"][1]["content"]
        answers.add(record["messages"][1]["content"])
    assert answers == {"1", "2", "3", "4"}


def test_colour_answers_name_a_colour_drawn(records):
    asked = [r for r in records if r["messages"][0]["content"][0]["text"].startswith("What colour")]
    assert len(asked) >= 40
    for record in asked:
        colours = {colour for colour, _ in colour_regions(decode(record))}
        assert COLOURS[record["messages"][1]["content"]] in colours


def test_records_are_openai_vision_chat_examples(records):
    for record in records[:5]:
        user, assistant = record["messages"]
        assert user["role"] == "user" and [p["type"] for p in user["content"]] == ["text", "image_url"]
        assert assistant == {"role": "assistant", "content": assistant["content"]}
        assert set(record) == {"messages"}


def test_shipped_files_are_what_make_data_writes(tmp_path):
    shipped = REPO / "examples" / "shapes"
    for path in write_dataset(tmp_path):
        assert path.read_bytes() == (shipped / path.name).read_bytes()


def test_unknown_question_kind_is_refused():
    with pytest.raises(ValueError, match="question kinds"):
        generate_pictures(3, seed=0, questions=("size",))


def test_shapes_demo_trains_and_scores_both_contenders(tmp_path, capsys):
    from hone.demo import run_shapes_demo

    summary = run_shapes_demo(str(tmp_path), ["train.max_steps=2", "train.threads=1", "train.eval_every=2",
                                              "eval.max_new_tokens=2", "data.validation_fraction=0"],
                              pictures=(16, 6), progress=False)
    assert summary["status"] == "succeeded" and list(summary["rows"]) == ["base", "tuned"]
    assert all(0.0 <= row["grader_score"] <= 1.0 for row in summary["rows"].values())
    model = tmp_path / "shapes" / "model"
    assert json.loads((model / "config.json").read_text())["model_type"] == "idefics3"
    sample = summary["samples"][0]
    assert sample["question"] == COUNT_QUESTION and sample["expected"] in {"1", "2", "3", "4"}
    assert len(sample["picture"].splitlines()) == SIZE // 3 and set(sample["picture"]) <= set("RGBY.\n")
    assert (tmp_path / "shapes" / "report" / "index.html").is_file()
    out = capsys.readouterr().out
    assert "| tuned |" in out and "expected: " in out


def test_demo_language_model_is_refused_for_the_pizza_task():
    out = subprocess.run([sys.executable, "-m", "hone", "demo", "--language-model", "smollm2-135m-instruct"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--language-model is for --task shapes" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_shapes_demo_runs_on_a_given_vision_language_model(tmp_path):
    from hone.demo import run_shapes_demo
    from hone.models.vision_families import save_tiny_vlm

    model = save_tiny_vlm("smolvlm", tmp_path / "smolvlm")
    summary = run_shapes_demo(str(tmp_path), [f"model={model}", "method.type=lora", "train.max_steps=1",
                                              "train.threads=1", "eval.max_new_tokens=2", "data.validation_fraction=0"],
                              pictures=(8, 4), progress=False)
    assert summary["status"] == "succeeded" and summary["rows"]["tuned"]["n"] == 4
    assert not (tmp_path / "shapes" / "model").exists()  # nothing built
    assert json.loads((tmp_path / "shapes" / "adapter" / "hone.json").read_text())["base_model"]["id"] == str(model)


def test_shapes_demo_takes_a_language_model_or_a_model_not_both(tmp_path):
    from hone.demo import run_shapes_demo
    from hone.errors import ConfigError

    with pytest.raises(ConfigError, match="not both"):
        run_shapes_demo(str(tmp_path), ["model=/nowhere"], language_model="smollm2-135m-instruct", progress=False)
    assert not (tmp_path / "shapes").exists()
