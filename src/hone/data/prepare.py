"""From the run's data settings to an objective's training and validation units, with a summary.

Every objective reads the same way (`read_split`): the files are parsed, records of a format the
objective does not take are errors naming file:line and the shape it expects, and validation is
the given file or a deterministic fraction of the training file. What a unit is (a tokenized
example for SFT, a tokenized pair for DPO) is the objective's business; `prepare_data` is SFT's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hone.data.formats import FORMAT_SHAPES, Example
from hone.data.images import FolderFiles
from hone.data.pack import split_validation
from hone.data.read import Issue, read_examples
from hone.data.replay import replay_examples
from hone.data.template import tokenize_example
from hone.data.vision import inline_uploaded_images, processor_for
from hone.errors import DataError

SFT_FORMATS = ("chat", "prompt_completion", "alpaca", "text")


@dataclass
class PreparedData:
    """An objective's train and validation units; `describe` is its one-line summary of them."""

    train: list
    validation: list
    notes: list[str] = field(default_factory=list)
    describe: str = ""
    info: dict = field(default_factory=dict)  # what the objective learnt from the data (e.g. class labels)

    def summary(self) -> str:
        if self.describe:
            head = self.describe
        else:  # SFT's tokenized examples
            tokens = sum(len(e.input_ids) for e in self.train)
            targets = sum(sum(1 for t in e.labels if t != -100) for e in self.train)
            head = (f"data: {len(self.train)} train / {len(self.validation)} validation examples, "
                    f"{tokens:,} train tokens ({targets / max(tokens, 1):.0%} with loss)")
        return "\n".join([head] + [f"  {note}" for note in self.notes])


def read_split(data_config, *, seed: int, formats: tuple[str, ...], objective: str,
               notes: list[str]) -> tuple[list[Example], list[Example]]:
    """(train, validation) examples of the given formats; other formats are line-numbered errors."""
    if not data_config.train:
        raise DataError("no training file", where="data.train", hint="set data.train=path/to/train.jsonl")
    train = _read(data_config.train, data_config.strict, notes, formats, objective)
    if data_config.validation:
        validation = _read(data_config.validation, data_config.strict, notes, formats, objective)
    elif data_config.validation_fraction > 0:
        train, validation = split_validation(train, data_config.validation_fraction, seed)
        notes.append(f"validation: {len(validation)} examples held out of {data_config.train} "
                     f"(validation_fraction={data_config.validation_fraction})")
    else:
        validation = []
    check_image_counts([*train, *validation], data_config.max_images)
    if data_config.image_files:
        inline_uploaded_images([*train, *validation], FolderFiles(data_config.image_files))
    return train, validation


def note_vision_packing(data_config, tokenizer, notes: list[str]) -> None:
    """Say that a vision-language model's examples do not pack, when packing was asked for."""
    if data_config.packing and processor_for(tokenizer) is not None:
        notes.append("data.packing: a vision-language model trains one example per row, so no example's image "
                     "tokens meet another's text")


def check_image_counts(examples: list[Example], max_images: int) -> None:
    """Refuse examples holding more than `data.max_images` images, naming their lines."""
    over = [(e, *e.where.rsplit(":", 1)) for e in examples if len(e.images) > max_images]
    if over:
        issues = [Issue(path, int(line), "", f"holds {len(e.images)} images; at most {max_images} are allowed")
                  for e, path, line in over[:20]]
        raise DataError(f"{len(over)} examples hold more than data.max_images={max_images} images",
                        where=over[0][1], issues=issues, hint="raise data.max_images")


def prepare_data(data_config, tokenizer, *, seed: int) -> PreparedData:
    """SFT's data: read, validate, split, template and tokenize; bad lines raise (strict) or are skipped."""
    notes: list[str] = []
    train, validation = read_split(data_config, seed=seed, formats=SFT_FORMATS, objective="sft", notes=notes)
    if data_config.replay:
        replay = replay_examples(len(train), data_config.replay, seed)
        train = train + replay
        notes.append(f"replay: {len(replay)} general-text examples mixed in (data.replay={data_config.replay})")

    def tokenize(examples):
        out = [tokenize_example(e, tokenizer, loss_on=data_config.loss_on, max_length=data_config.max_length,
                                reasoning=data_config.reasoning)
               for e in examples]
        untrained = sum(e.untrained_replies for e in out)
        if untrained:
            notes.append(f"{untrained} earlier replies not trained: the chat template renders them differently "
                         "once a later reply follows (it drops their reasoning or end token); the last reply of "
                         "each conversation trains")
        truncated = sum(e.truncated for e in out)
        if truncated:
            notes.append(f"{truncated} examples truncated to data.max_length={data_config.max_length}")
        kept = [e for e in out if any(t != -100 for t in e.labels[1:])]
        if len(kept) < len(out):
            notes.append(f"{len(out) - len(kept)} examples dropped: no loss tokens left after truncation")
        return kept

    prepared = PreparedData(tokenize(train), tokenize(validation), notes)
    note_vision_packing(data_config, tokenizer, notes)
    if not prepared.train:
        raise DataError("no usable training examples", where=data_config.train)
    return prepared


def wrong_format_issue(path: str, line: int, found: str, formats: tuple[str, ...], objective: str) -> Issue:
    """A record of a format the objective does not train on, at path:line."""
    return Issue(str(path), line, "", f"is a {found} record; objective {objective} takes {' or '.join(formats)} records")


def expected_shapes(formats: tuple[str, ...], objective: str) -> str:
    return f"objective {objective} expects: " + "; ".join(f"{name} {FORMAT_SHAPES[name]}" for name in formats)


def _read(path: str, strict: bool, notes: list[str], formats: tuple[str, ...], objective: str) -> list[Example]:
    examples, issues = read_examples(path, strict=strict)
    wrong = [e for e in examples if e.format not in formats]
    if wrong:
        wrong_issues = [wrong_format_issue(path, int(e.where.rsplit(":", 1)[1]), e.format, formats, objective)
                        for e in wrong]
        if strict or len(wrong) == len(examples):
            raise DataError(f"{len(wrong)} of {len(examples) + len(issues)} records do not fit objective "
                            f"{objective}", where=path, issues=wrong_issues[:20],
                            hint=expected_shapes(formats, objective))
        issues = issues + wrong_issues
        examples = [e for e in examples if e.format in formats]
    if issues:
        notes.append(f"{path}: skipped {len(issues)} invalid lines (data.strict=false); first: {issues[0]}")
    return examples
