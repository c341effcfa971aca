"""`hone serve` with images: OpenAI's image_url parts through the official client on a real uvicorn,
two LoRA runs on one tiny vision-language base swapped per request (answers equal `hone generate`),
image tokens in usage, and every bad image a 400 naming its content part."""

import base64
import io
import json
import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageDraw

from hone.data.images import image_data_url

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def shapes(count: int, colour: str = "red") -> Image.Image:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k in range(count):
        draw.rectangle([2 + 9 * k, 10, 8 + 9 * k, 20], fill=COLOURS[colour])
    return image


def ask(url: str, text: str = "How many shapes?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]


def train_run(base, out, name: str, answer: str):
    """A LoRA run on the tiny VLM base that learns to answer `answer` about pictures of shapes."""
    from hone.api import train

    records = [{"messages": ask(image_data_url(shapes(n, c))) + [{"role": "assistant", "content": answer}]}
               for n in (1, 2, 3) for c in COLOURS]
    data = out / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    return train(None, [f"model={base}", f"data.train={data}", f"output_dir={out}", f"name={name}", "train.lr=0.05",
                        "train.threads=1", "train.max_steps=6", "method.rank=4"],
                 progress=False, log=lambda *a: None)


@pytest.fixture(scope="module", params=["smolvlm", "qwen2.5-vl"])
def vlm(request, tmp_path_factory):
    """(family, base dir, {adapter name: run}) — two LoRA runs on one tiny base of the family."""
    import torch

    from hone.models.vision_families import save_tiny_vlm

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp(f"vlm-{request.param}")
    base = save_tiny_vlm(request.param, out / "base")
    runs = {"counter": train_run(base, out, "counter", "three"), "painter": train_run(base, out, "painter", "blue blue")}
    return request.param, base, runs


@pytest.fixture(scope="module")
def served(vlm, tmp_path_factory):
    """(url, openai client, family, base, runs, home): the base and both runs served side by side."""
    import openai

    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    family, base, runs = vlm
    home = tmp_path_factory.mktemp("home")
    settings = ServeSettings(model=str(base), adapters={name: str(run.run_dir) for name, run in runs.items()},
                             keys_file=str(home / "keys.json"), feedback_file=str(home / "f.jsonl"),
                             max_images=2, max_image_bytes=20_000, max_tokens=32, batch_wait_ms=50)
    with running_server(create_app(settings)) as url:
        yield url, openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0), family, base, runs, home


def test_two_runs_on_one_vlm_base_answer_as_hone_generate_does(served):
    from hone import api

    _, client, family, base, runs, _ = served
    prompts = [ask(image_data_url(shapes(n, c))) for n, c in ((1, "red"), (3, "blue"))]
    expected = {name: api.generate(prompts, adapter=run.run_dir, max_new_tokens=8) for name, run in runs.items()}
    expected[str(base)] = api.generate(prompts, model=str(base), max_new_tokens=8)

    def chat(job):
        name, messages = job
        reply = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=8)
        return name, reply.choices[0].message.content.strip()

    jobs = [(name, messages) for name in expected for messages in prompts] * 2  # concurrent: adapters interleave
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(chat, jobs))
    for (name, messages), (_, answer) in zip(jobs, answers):
        assert answer == expected[name][prompts.index(messages)], (family, name)
    assert expected["counter"] != expected["painter"]  # the runs differ, so a wrong adapter would show


def test_usage_counts_the_image_tokens_and_streams_agree(served):
    from hone.models.vision_families import vision_family

    _, client, family, _, _, _ = served
    url = image_data_url(shapes(2))
    with_image = client.chat.completions.create(model="counter", messages=ask(url), temperature=0, max_tokens=6)
    text_only = client.chat.completions.create(model="counter", temperature=0, max_tokens=6,
                                               messages=[{"role": "user", "content": "How many shapes?"}])
    tokens = vision_family(family).tokens_per_image
    assert with_image.usage.prompt_tokens >= text_only.usage.prompt_tokens + tokens
    stream = client.chat.completions.create(model="counter", messages=ask(url), temperature=0, max_tokens=6,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == with_image.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == with_image.usage.prompt_tokens
    two = client.chat.completions.create(model="counter", messages=ask(url), temperature=0, max_tokens=6, n=2)
    assert [c.message.content for c in two.choices] == [with_image.choices[0].message.content] * 2
    assert two.usage.prompt_tokens == 2 * with_image.usage.prompt_tokens
    full = client.chat.completions.create(model="counter", messages=ask(url), temperature=0, max_tokens=7,
                                          extra_body={"ignore_eos": True})
    assert full.usage.completion_tokens == 7 and full.choices[0].finish_reason == "length"
    sampled = [client.chat.completions.create(model="painter", messages=ask(url), temperature=1.5, max_tokens=8,
                                              seed=11).choices[0].message.content for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling with images repeatable


def encoded(image: Image.Image, kind: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return f"data:image/{kind.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def noise(size: int) -> Image.Image:
    rng = random.Random(0)
    return Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))


def bad_requests():
    good = image_data_url(shapes(1))
    png = encoded(shapes(1), "PNG")
    two = ask(good)[0]["content"] + [{"type": "image_url", "image_url": {"url": good}}] * 2
    yield "corrupt", ask(png[: len(png) // 2] + "AAAA"), "corrupt"
    yield "not an image", ask("data:image/png;base64," + base64.b64encode(b"hello, not a picture").decode()), "Pillow"
    yield "unsupported", ask(encoded(shapes(1), "TIFF")), r"unsupported format \(TIFF\)"
    yield "web", ask("https://example.com/cat.png"), "reads no network"
    yield "path", ask("/etc/hostname"), r"is a path \(/etc/hostname\); the server reads no files"
    yield "oversized", ask(encoded(noise(120), "PNG")), "oversized"
    yield "too many", [{"role": "user", "content": two}], "at most 2"
    yield "empty url", ask(""), "empty"
    yield "detail", [{"role": "user", "content": [{"type": "text", "text": "hi"}, {
        "type": "image_url", "image_url": {"url": good, "detail": "ultra"}}]}], "auto, low or high"
    yield "audio part", [{"role": "user", "content": [{"type": "text", "text": "hi"}, {
        "type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}], "only \"text\" and \"image_url\""
    yield "assistant image", [*ask(good), {"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": good}}]}, {"role": "user", "content": "and now?"}], "only user and system"


WHERE = {"too many": "messages[0].content[3]", "assistant image": "messages[1].content[0]"}


@pytest.mark.parametrize("case", list(bad_requests()), ids=lambda case: case[0])
def test_a_bad_image_is_a_400_naming_its_part(served, case):
    import httpx

    url = served[0]
    _, messages, says = case
    reply = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={"model": "counter", "messages": messages, "max_tokens": 4})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == WHERE.get(case[0], "messages[0].content[1]"), error
    assert re.search(says, error["message"]), error["message"]


def test_a_text_only_base_refuses_images_naming_the_model(tiny_model_dir, tmp_path):
    import openai

    from hone.serve.app import create_app
    from hone.serve.run import running_server
    from hone.serve.settings import ServeSettings

    settings = ServeSettings(model=str(tiny_model_dir), keys_file=str(tmp_path / "keys.json"),
                             feedback_file=str(tmp_path / "f.jsonl"))
    with running_server(create_app(settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=str(tiny_model_dir), messages=ask(image_data_url(shapes(1))))
        assert f"model {tiny_model_dir} has no vision tower" in error.value.body["message"]
        assert error.value.body["param"] == "messages[0].content[1]"
        text = client.chat.completions.create(model=str(tiny_model_dir), max_tokens=3, messages=[
            {"role": "user", "content": [{"type": "text", "text": "hello"}]}])  # text parts alone still work
        assert text.choices[0].finish_reason in ("stop", "length")


def test_feedback_on_an_image_answer_exports_a_training_record_with_the_image(served, tmp_path):
    import httpx

    from hone.data.formats import parse_record
    from hone.serve.feedback import export_feedback

    url, client, _, _, _, home = served
    picture = image_data_url(shapes(3))
    reply = client.chat.completions.create(model="counter", messages=ask(picture), temperature=0, max_tokens=4)
    sent = httpx.post(f"{url}/v1/feedback", json={"response_id": reply.id, "corrected": "three"}, timeout=30)
    assert sent.status_code == 200, sent.text
    out = tmp_path / "next-round.jsonl"
    export_feedback(home / "f.jsonl", out)
    exported = [parse_record(json.loads(line)) for line in out.read_text().splitlines()]
    assert exported[-1].images == [picture] and exported[-1].messages[-1]["content"] == "three"
