"""Image content parts: parsing OpenAI's shape, reading images from data: URLs, paths and uploaded
files, and `hone data check` reporting bad images by file:line."""

import base64
import io
import json

import pytest
from PIL import Image

from hone.data.formats import example_image_parts, parse_record
from hone.data.images import ImageLimits, decode_image, image_data_url, load_image
from hone.data.record_errors import RecordError
from hone.data.report import check_file


def picture(size=(32, 32), color=(200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.putpixel((0, 0), (0, 0, 255))
    return image


def encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def image_record(*urls, text="How many shapes?", reply="three") -> dict:
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": reply}]}


def write(tmp_path, records, name="train.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_image_parts_keep_text_images_and_order():
    url = image_data_url(picture())
    example = parse_record(image_record(url, "pics/a.png", text="Compare"))
    user = example.messages[0]
    assert user["content"] == "Compare"
    assert user["images"] == [url, "pics/a.png"]
    assert [p["type"] for p in user["parts"]] == ["text", "image", "image"]
    assert example.images == [url, "pics/a.png"]
    assert example_image_parts(example)[1]["field"] == "messages[0].content[2].image_url.url"


def test_an_image_alone_is_a_user_turn_and_replies_hold_no_images():
    example = parse_record({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "a.png"}}]},
                                         {"role": "assistant", "content": "a cat"}]})
    assert example.images == ["a.png"]
    with pytest.raises(RecordError, match="only user and system messages may hold images") as error:
        parse_record({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
            {"type": "image_url", "image_url": {"url": "a.png"}}]}]})
    assert error.value.field == "messages[1].content[0].image_url.url"
    with pytest.raises(RecordError, match="is an object; expected a data:image"):
        parse_record(image_record({"url": "a.png"}))  # not a string url
    record = image_record("a.png")
    record["messages"][0]["content"][1]["image_url"]["detail"] = "ultra"
    with pytest.raises(RecordError, match="expected auto, low or high"):
        parse_record(record)
    with pytest.raises(RecordError, match='"audio"'):
        parse_record({"messages": [{"role": "user", "content": [{"type": "audio"}]}, {"role": "assistant", "content": "x"}]})


def test_preference_prompts_carry_images():
    example = parse_record({"prompt": [{"role": "user", "content": [{"type": "text", "text": "colour?"},
                                                                    {"type": "image_url", "image_url": {"url": "x.png"}}]}],
                            "chosen": "red", "rejected": "blue"})
    assert example.images == ["x.png"]


def test_different_images_are_not_duplicates():
    a, b = (parse_record(image_record(url)) for url in ("a.png", "b.png"))
    from hone.data.formats import example_key

    assert example_key(a) != example_key(b)


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "WEBP", "GIF"])
def test_load_image_reads_each_accepted_format_from_data_urls_and_paths(tmp_path, kind):
    data = encoded(picture(), kind)
    (tmp_path / f"p.{kind.lower()}").write_bytes(data)
    url = f"data:image/{kind.lower()};base64," + base64.b64encode(data).decode()
    for source in (url, f"p.{kind.lower()}", str(tmp_path / f"p.{kind.lower()}")):
        image = load_image(source, field="f", base_dir=tmp_path)
        assert image.mode == "RGB" and image.size == (32, 32)


class Uploads:
    def __init__(self, files):
        self.files = files

    def image_bytes(self, file_id):
        return self.files[file_id]


def test_uploaded_files_resolve_through_the_file_resolver():
    uploads = Uploads({"file-abc123": encoded(picture(), "PNG")})
    assert load_image("file-abc123", field="f", files=uploads).size == (32, 32)
    with pytest.raises(RecordError, match="does not exist"):
        load_image("file-missing", field="f", files=uploads)
    with pytest.raises(RecordError, match="only be read by the service"):
        load_image("file-abc123", field="f")


@pytest.mark.parametrize("kind", ["TIFF", "BMP"])
def test_unsupported_formats_name_the_format_and_the_accepted_ones(kind):
    with pytest.raises(RecordError, match=f"unsupported format \\({kind}\\); accepted: PNG, JPEG, WEBP, GIF"):
        decode_image(encoded(picture(), kind), field="f")


def test_corrupt_truncated_oversized_animated_and_web_images_are_refused(tmp_path):
    png = encoded(picture(), "PNG")
    with pytest.raises(RecordError, match="corrupt"):
        decode_image(png[: len(png) // 2], field="f")
    with pytest.raises(RecordError, match="not an image Pillow can read"):
        decode_image(b"definitely not an image", field="f")
    with pytest.raises(RecordError, match="base64 is corrupt or truncated"):
        load_image("data:image/png;base64," + base64.b64encode(png).decode()[:-3], field="f")
    with pytest.raises(RecordError, match="oversized: 100x100 pixels"):
        decode_image(encoded(picture((100, 100)), "PNG"), field="f", limits=ImageLimits(max_pixels=5000))
    with pytest.raises(RecordError, match="oversized: .* bytes"):
        load_image(image_data_url(picture()), field="f", limits=ImageLimits(max_bytes=10))
    frames = [picture(color=(i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(RecordError, match="animated GIF"):
        decode_image(buffer.getvalue(), field="f")
    with pytest.raises(RecordError, match="hone reads no network"):
        load_image("https://example.com/a.png", field="f")
    with pytest.raises(RecordError, match="unreadable: no image file"):
        load_image("missing.png", field="f", base_dir=tmp_path)


def test_data_check_reports_each_bad_image_by_file_and_line(tmp_path):
    good = image_data_url(picture())
    (tmp_path / "ok.jpg").write_bytes(encoded(picture(), "JPEG"))
    (tmp_path / "broken.png").write_bytes(encoded(picture(), "PNG")[:40])
    (tmp_path / "scan.tiff").write_bytes(encoded(picture(), "TIFF"))
    (tmp_path / "huge.png").write_bytes(encoded(picture((120, 120)), "PNG"))
    records = [
        image_record(good),  # 1
        image_record("ok.jpg"),  # 2
        image_record("broken.png"),  # 3
        image_record("scan.tiff"),  # 4
        image_record(good[:-7]),  # 5 truncated base64
        image_record("huge.png"),  # 6
        image_record(*[good] * 4),  # 7 too many
        image_record("gone.png"),  # 8
        {"messages": [{"role": "user", "content": "plain text"}, {"role": "assistant", "content": "fine"}]},  # 9
    ]
    report = check_file(write(tmp_path, records), limits=ImageLimits(max_images=3, max_pixels=10_000))
    found = {issue.line: (issue.field, issue.message) for issue in report.issues}
    assert sorted(found) == [3, 4, 5, 6, 7, 8]
    assert "corrupt" in found[3][1] and found[3][0] == "messages[0].content[1].image_url.url"
    assert "unsupported format (TIFF)" in found[4][1]
    assert "truncated" in found[5][1]
    assert "oversized: 120x120" in found[6][1]
    assert found[7] == ("messages[0].content[4].image_url.url",
                        "is one image too many: the example holds 4 images; at most 3 are allowed (data.max_images)")
    assert "no image file" in found[8][1]
    assert report.valid == 3 and not report.ok
    rendered = report.render()
    assert f"{tmp_path / 'train.jsonl'}:4: messages[0].content[1].image_url.url: is an unsupported format" in rendered


def test_a_text_tokenizer_leaves_image_examples_untokenized_without_calling_them_invalid(tmp_path, tiny_tokenizer):
    records = [image_record(image_data_url(picture())),
               {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    report = check_file(write(tmp_path, records), tiny_tokenizer)
    assert report.ok and report.images_untokenized == 1 and report.token_stats["count"] == 1
    assert "examples with images not tokenized: 1" in report.render()


def test_uploaded_image_ids_in_training_files_read_from_the_image_files_folder(tmp_path):
    from hone.data.config import DataConfig
    from hone.data.prepare import read_split
    from hone.errors import DataError

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "file-abc123.png").write_bytes(encoded(picture(), "PNG"))
    path = write(tmp_path, [image_record("file-abc123")] * 2)
    config = DataConfig(train=str(path), validation_fraction=0, image_files=str(uploads))
    train, _ = read_split(config, seed=0, formats=("chat",), objective="sft", notes=[])
    url = train[0].images[0]
    assert url.startswith("data:image/png;base64,") and load_image(url, field="f").size == (32, 32)
    assert example_image_parts(train[0])[0]["url"] == url
    write(tmp_path, [image_record("file-gone")])
    with pytest.raises(DataError, match="file-gone does not exist"):
        read_split(config, seed=0, formats=("chat",), objective="sft", notes=[])
