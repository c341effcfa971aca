"""Evaluation on a held-out file with images: base and tuned contenders scored with graders (exact
match, string check, JSON fields, a model judge — a text-only judge reads the text and says so), and
the HTML report showing each image as an embedded thumbnail in the same row as both answers."""

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from PIL import Image, ImageDraw

from hone.data.images import image_data_url

WORDS = {1: "one", 2: "two", 3: "three"}


def shapes(count: int) -> Image.Image:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k in range(count):
        draw.rectangle([2 + 9 * k, 8 + 4 * k, 8 + 9 * k, 20], fill=(40, 40, 200))
    return image


def record(url: str, n: int) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                      {"type": "text", "text": "Count the bars as JSON."}]},
                         {"role": "assistant", "content": json.dumps({"count": WORDS[n]})}]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A LoRA run on a tiny VLM whose eval.file holds pictures by relative path and as data: URLs."""
    import torch

    from hone.api import train
    from hone.models.vision_families import save_tiny_vlm

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("vision-eval")
    base = save_tiny_vlm("smolvlm", out / "base")
    (out / "pics").mkdir()
    for n in WORDS:
        shapes(n).save(out / "pics" / f"{n}.png")
    train_file, heldout = out / "train.jsonl", out / "heldout.jsonl"
    train_file.write_text("".join(json.dumps(record(image_data_url(shapes(n)), n)) + "\n" for n in (1, 2, 3) * 4))
    heldout.write_text("".join(json.dumps(record(url, n)) + "\n" for n, url in
                               ((1, "pics/1.png"), (2, image_data_url(shapes(2))), (3, "pics/3.png"))))
    result = train(None, [f"model={base}", f"data.train={train_file}", f"output_dir={out}", "name=run",
                          "train.lr=0.05", "train.threads=1", "train.max_steps=6", "method.rank=4",
                          f"eval.file={heldout}", "eval.max_new_tokens=8"], progress=False, log=lambda *a: None)
    return result.run_dir, base, heldout


class Rows(HTMLParser):
    """The rows of the table with id `ident`: per row, its cells' classes, texts and image sources."""

    def __init__(self, ident: str) -> None:
        super().__init__()
        self.ident, self.inside, self.rows, self.cell = ident, False, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.inside = attrs.get("id") == self.ident
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.cell = {"class": attrs.get("class"), "text": "", "images": []}
            self.rows[-1].append(self.cell)
        elif self.inside and tag == "img" and self.cell is not None:
            self.cell["images"].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif tag == "td":
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data


def decoded(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")


def test_the_report_shows_each_image_in_the_row_of_both_answers(run):
    from hone.evaluate.report import write_report

    run_dir, _, _ = run
    page = write_report(run_dir, progress=False, log=lambda *a: None).read_text()
    comparison = json.loads((run_dir / "evaluation.json").read_text())
    assert set(comparison["results"]) == {"base", "tuned"}
    parser = Rows("examples")
    parser.feed(page)
    rows = [row for row in parser.rows if row]  # the header row has no td
    assert len(rows) == 3
    for n, row in zip(WORDS, rows):
        cells = {cell["class"]: cell for cell in row}
        assert len(cells["images"]["images"]) == 1
        assert decoded(cells["images"]["images"][0]).tobytes() == shapes(n).tobytes()  # this row's own picture
        assert cells["base"]["text"] == comparison["results"]["base"]["predictions"][n - 1]
        assert cells["tuned"]["text"] == comparison["results"]["tuned"]["predictions"][n - 1]
    assert comparison["results"]["base"]["predictions"] != comparison["results"]["tuned"]["predictions"]


def test_hone_verify_finds_the_server_equal_to_generate_on_a_vision_run(run):
    from hone.serve.verify import verify_run

    run_dir, _, _ = run  # its eval.file holds pictures by path: the server is sent them as data: URLs
    report = verify_run(run_dir, max_new_tokens=6)
    assert report["prompts"] == 3 and report["server"] == {"identical": True, "equal": 3, "of": 3}


def test_graders_score_vision_items_for_base_and_tuned(run):
    from hone.data.prompts import task_item
    from hone.evaluate.compare import compare_contenders
    from hone.rewards.metric import eval_grader, score_outputs

    run_dir, _, heldout = run
    references = [json.dumps({"count": WORDS[n]}) for n in WORDS]
    exact = compare_contenders(heldout, adapter=run_dir, contenders=("base", "tuned"), max_new_tokens=8,
                               perplexity=False, progress=False, log=lambda *a: None)
    assert [item.reference for item in exact.items] == references
    items = [task_item(item.messages, item.reference, item.where) for item in exact.items]
    assert all(item["messages"][0]["images"] for item in items)  # the graders' items carry the images
    for name, result in exact.results.items():
        predictions = result["predictions"]
        assert [s["exact_match"] for s in result["scores"]] == [float(p.strip() == r) for p, r in
                                                                 zip(predictions, references)], name
        check = eval_grader(grader={"type": "string_check", "operation": "contains", "reference": "count"})
        scores = score_outputs(check, predictions, items)[0]
        assert [s["grader_score"] for s in scores] == [float("count" in p) for p in predictions]
        fields = score_outputs(eval_grader(grader={"type": "json"}), [*references[:1], *predictions[1:]], items)[0]
        assert fields[0]["field_accuracy"] == 1.0 and len(fields) == 3  # a right answer has every field right


def test_a_text_only_judge_reads_the_text_and_says_so_and_a_vision_judge_sees_the_images(run, tiny_model_dir):
    from hone.data.read import read_examples
    from hone.evaluate.compare import compare_contenders
    from hone.evaluate.task import held_out
    from hone.data.prompts import task_item
    from hone.rewards.model_judge import Config, ModelJudge, rubric_messages

    run_dir, base, heldout = run
    judge = {"type": "model", "model": str(tiny_model_dir), "rubric": "Is the count right?", "max_new_tokens": 4}
    judged = compare_contenders(heldout, adapter=run_dir, contenders=("tuned",), max_new_tokens=6, perplexity=False,
                                progress=False, log=lambda *a: None, grader=judge)
    assert any("text-only model judge reads" in note for note in judged.notes)

    items = [held_out(example) for example in read_examples(str(heldout), strict=True)[0]]
    item = task_item(items[0].messages, items[0].reference, items[0].where)
    config = Config(**judge)
    prompt = rubric_messages(config, {"output_text": "two"}, item)[-1]["content"]
    assert "The task came with 1 image, which you are not shown: judge from the text only." in prompt
    text_judge = ModelJudge(config)
    grade = text_judge.grade([{"output_text": "two"}], [item])[0]
    assert "text-only judge" in grade.reason

    vision_judge = ModelJudge(Config(**{**judge, "model": str(base)}))
    assert vision_judge.grade([{"output_text": "two"}], [item])[0].reason.find("text-only") < 0
    shown = vision_judge._messages({"output_text": "two"}, item, sees_images=True)
    user = next(m for m in shown if m["role"] == "user")
    assert user["images"] == items[0].messages[0]["images"] and "not shown" not in user["content"]
