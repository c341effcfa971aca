"""Conversations with images as a vision-language model sees them: its processor expands each image
placeholder of the rendered chat into the image's tokens and turns the pictures into pixel inputs.

hone renders and masks the conversation as text first (`hone.data.template`: the placeholders stand
where the images go), then lets the model's own processor expand it, and carries the labels over to
the expanded ids by aligning the two token sequences: tokens the processor kept are matched one to
one, everything it added (image tokens, their wrappers) is a non-target. The loss therefore falls on
assistant text only, never on an image token, for every family alike.

A model's processor travels with its tokenizer (`attach_processor`, done by `hone.models.load`),
because the tokenizer is what every data path already takes.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from pathlib import Path

from hone.data.formats import Example, example_image_parts
from hone.data.images import FILE_ID, FileResolver, ImageLimits, bytes_data_url, load_image
from hone.data.record_errors import RecordError
from hone.errors import DataError, HoneError

IGNORE = -100
PROCESSOR_ATTRIBUTE = "hone_processor"
PIXEL_KEYS_PER_TOKEN = ("token_type_ids", "mm_token_type_ids")  # processor outputs aligned with input_ids
PIXEL_KEYS = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes")  # per image, for forward


def attach_processor(tokenizer, processor):
    """Make `processor` (a vision-language model's) travel with its tokenizer; returns the tokenizer."""
    setattr(tokenizer, PROCESSOR_ATTRIBUTE, processor)
    return tokenizer


def processor_for(tokenizer):
    """The processor attached to `tokenizer` (None: a text-only model)."""
    return getattr(tokenizer, PROCESSOR_ATTRIBUTE, None)


def data_dir(where: str) -> Path | None:
    """The folder of the data file an example came from (`where` is `path:line`), for relative image paths."""
    path = where.rsplit(":", 1)[0] if ":" in where else ""
    return Path(path).parent if path else None


def example_images(example: Example, *, limits: ImageLimits = ImageLimits(),
                   files: FileResolver | None = None) -> list:
    """Every image of an example, read and checked, in order (a DataError at the example's line if one is
    bad); how many an example may hold is checked when the data is read (`data.max_images`)."""
    parts = example_image_parts(example)
    try:
        return [load_image(p["url"], field=p["field"], base_dir=data_dir(example.where), files=files, limits=limits)
                for p in parts]
    except RecordError as error:
        raise DataError(str(error), where=example.where, hint="run `hone data check` on the file") from None


def inline_uploaded_images(examples: list[Example], files: FileResolver) -> None:
    """Replace each uploaded-file id (`file-...`) among the examples' image urls by a data: URL of its
    bytes, so training reads the pictures without the service's file store; an unknown id is a DataError."""
    for example in examples:
        for message in example.messages or []:
            for part in message.get("parts", []):
                if part["type"] == "image" and FILE_ID.fullmatch(part["url"]):
                    try:
                        part["url"] = bytes_data_url(files.image_bytes(part["url"]))
                    except KeyError:
                        raise DataError(f"{part['field']}: the uploaded file {part['url']} does not exist",
                                        where=example.where, hint="upload the image first") from None
            if "parts" in message:
                message["images"] = [part["url"] for part in message["parts"] if part["type"] == "image"]


def expand_images(processor, text: str, images: list) -> tuple[list[int], dict[str, list[int]]]:
    """The processor's token ids of a rendered conversation with its images, and its other per-token
    outputs (token type ids marking image tokens) as lists aligned with the ids."""
    out = processor(text=[text], images=[images] if images else None, add_special_tokens=False)
    ids = list(out["input_ids"][0])
    per_token = {key: list(out[key][0]) for key in PIXEL_KEYS_PER_TOKEN if key in out}
    return [int(i) for i in ids], {k: [int(v) for v in values] for k, values in per_token.items()}


def align_labels(text_ids: list[int], text_labels: list[int], ids: list[int], where: str = "") -> tuple[list[int], int, int]:
    """Labels for `ids` (the processor's expansion of `text_ids`) carried over from `text_labels`; the
    number of tokens the images take (every occurrence of a token the processor inserted: image tokens
    and their wrappers); and the index just past the last inserted token (where truncation may start)."""
    labels = [IGNORE] * len(ids)
    inserted: set[int] = set()
    end = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, text_ids, ids, autojunk=False).get_opcodes():
        if tag == "equal":
            labels[j1:j2] = text_labels[i1:i2]
        elif j2 > j1:
            inserted.update(ids[j1:j2])
            end = j2
    wanted = sum(label != IGNORE for label in text_labels)
    if sum(label != IGNORE for label in labels) != wanted:
        raise HoneError("the processor changed the tokens of an assistant reply while expanding the images, so "
                        "the loss mask cannot be carried over", where=where,
                        hint="check that the chat template puts image placeholders only in user and system turns")
    return labels, sum(1 for token in ids if token in inserted), end


def pixel_inputs(processor, images_per_row: list[list]) -> dict:
    """The pixel inputs of a batch (pixel_values, image_grid_thw, pixel_attention_mask...), the images
    of each row in order, as the model's own image processor lays them out."""
    if not any(images_per_row):
        return {}
    out = processor.image_processor(images=images_per_row, return_tensors="pt")
    return {key: value for key, value in out.items() if key in PIXEL_KEYS}
