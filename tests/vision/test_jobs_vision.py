"""The service with images: `purpose=vision` uploads, training files whose images are data: URLs or a
project's uploaded image ids (checked by line at upload, never another project's), and a fine-tuning
job (SFT and DPO) on a tiny vision-language base run end to end by a `hone worker`, its model then called with an
image through /v1/chat/completions (the official client, a real uvicorn, a real SQLite store)."""

import io
import json

import openai
import pytest
from PIL import Image, ImageDraw

from hone.data.images import image_data_url
from tests.jobs.conftest import running_service, wait_for


def shapes(count: int) -> Image.Image:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k in range(count):
        draw.ellipse([2 + 9 * k, 10, 8 + 9 * k, 18], fill=(20, 120, 20))
    return image


def png(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def record(url: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": "How many circles?"}]},
                         {"role": "assistant", "content": answer}]}


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture(scope="module")
def vlm_base(tmp_path_factory):
    from hone.models.vision_families import save_tiny_vlm

    return save_tiny_vlm("smolvlm", tmp_path_factory.mktemp("vlm") / "base")


@pytest.fixture
def service(tmp_path, vlm_base):
    with running_service(tmp_path, vlm_base) as svc:
        yield svc


def test_image_uploads_and_training_files_naming_them_are_checked_by_line(service, vlm_base):
    alpha, beta = service.openai("alpha"), service.openai("beta")
    picture = alpha.files.create(file=("two.png", png(shapes(2))), purpose="vision")
    assert picture.purpose == "vision" and picture.bytes == len(png(shapes(2)))
    theirs = beta.files.create(file=("one.webp", png(shapes(1), "WEBP")), purpose="vision")
    with pytest.raises(openai.BadRequestError, match="unsupported format \\(TIFF\\)"):
        alpha.files.create(file=("scan.tiff", png(shapes(1), "TIFF")), purpose="vision")
    with pytest.raises(openai.BadRequestError, match="not an image"):
        alpha.files.create(file=("notes.png", b"not a picture at all"), purpose="vision")

    good = [record(picture.id, "two"), record(image_data_url(shapes(3)), "three")]
    accepted = alpha.files.create(file=("train.jsonl", jsonl(good)), purpose="fine-tune")
    assert accepted.model_extra["report"]["valid"] == 2

    for bad, says in (([*good, record(theirs.id, "one")], f"train.jsonl:3: messages[0].content[0].image_url.url: "
                                                          f"is the uploaded file {theirs.id}, which does not exist"),
                      ([record("/etc/hostname", "one"), *good], "train.jsonl:1: messages[0].content[0].image_url.url:"
                                                                " is a path (/etc/hostname)"),
                      ([*good, record(image_data_url(shapes(1))[:-8], "one")], "train.jsonl:3: messages[0].content[0].image_url.url: is a corrupt")):
        with pytest.raises(openai.BadRequestError) as refused:
            alpha.files.create(file=("train.jsonl", jsonl(bad)), purpose="fine-tune")
        assert says in refused.value.body["message"], refused.value.body["message"]
        assert refused.value.body["param"] == "file"
    report = refused.value.body["report"]  # the file's `hone data check` report, by line
    assert [(issue["line"], issue["field"]) for issue in report["issues"]] == [(3, "messages[0].content[0].image_url.url")]
    assert [f.id for f in beta.files.list()] == [theirs.id]  # nothing of alpha's shows
    ten = alpha.files.create(file=("ten.jsonl", jsonl(good * 5)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="hone.data.image_files is set by the service"):
        alpha.fine_tuning.jobs.create(model=str(vlm_base), training_file=ten.id,
                                      extra_body={"hone": {"data.image_files": str(service.data_dir / "files")}})


def test_a_job_on_a_vision_base_trains_on_uploaded_images_and_its_model_reads_images(service, vlm_base):
    from hone import api

    client = service.openai()
    ids = {n: client.files.create(file=(f"{n}.png", png(shapes(n))), purpose="vision").id for n in (1, 2, 3)}
    words = {1: "one", 2: "two", 3: "three"}
    records = [record(ids[n] if k % 2 else image_data_url(shapes(n)), words[n]) for k in range(4) for n in (1, 2, 3)]
    training = client.files.create(file=("shapes.jsonl", jsonl(records)), purpose="fine-tune")
    heldout = client.files.create(file=("heldout.jsonl", jsonl([record(ids[n], words[n]) for n in (1, 2, 3)])),
                                  purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(vlm_base), training_file=training.id, suffix="shapes",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 2}}},
        extra_body={"hone": {"train.max_steps": 4, "train.save_every": 4, "train.lr": 0.05, "method.rank": 4,
                             "eval.file": heldout.id, "eval.max_new_tokens": 4}})
    pairs = [{"input": {"messages": record(ids[n], "")["messages"][:1]},
              "preferred_output": [{"role": "assistant", "content": words[n]}],
              "non_preferred_output": [{"role": "assistant", "content": words[4 - n]}]} for n in (1, 2, 3) * 4]
    preferences = client.files.create(file=("pairs.jsonl", jsonl(pairs)), purpose="fine-tune")
    dpo = client.fine_tuning.jobs.create(
        model=str(vlm_base), training_file=preferences.id, suffix="pairs",
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 2, "beta": 0.1}}},
        extra_body={"hone": {"train.max_steps": 2, "train.lr": 0.01, "method.rank": 4}})
    client.files.delete(ids[3])  # the jobs train on copies with the images inlined
    service.start_worker()
    for created in (job, dpo):
        ended = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(created.id)).status in
                         ("succeeded", "failed", "cancelled") and j, timeout=180, what="the job to end")
        assert ended.status == "succeeded", (ended.error, service.worker_logs())
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.model_extra["results"]["eval_n"] == 3  # the held-out file named uploaded images too

    question = record(image_data_url(shapes(2)), "")["messages"][:1]
    reply = client.chat.completions.create(model=done.fine_tuned_model, messages=question, temperature=0, max_tokens=6)
    run_dir = service.data_dir / "runs" / job.id
    assert reply.choices[0].message.content.strip() == api.generate(question, adapter=run_dir, max_new_tokens=6)
    assert reply.usage.prompt_tokens > 10  # the image's tokens are counted
    with pytest.raises(openai.BadRequestError, match="does not exist"):  # ids resolve in the caller's project only
        service.openai("beta").chat.completions.create(model=str(vlm_base), max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": ids[1]}}]}])
    ok = client.chat.completions.create(model=client.fine_tuning.jobs.retrieve(dpo.id).fine_tuned_model, max_tokens=2,
                                        messages=[{"role": "user", "content": [{"type": "image_url",
                                                                                "image_url": {"url": ids[1]}}]}])
    assert ok.usage.prompt_tokens > 4 and ok.choices[0].finish_reason in ("stop", "length")
