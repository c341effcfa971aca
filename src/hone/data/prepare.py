"""From the run's data settings to tokenized train and validation examples, with a summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from hone.data.read import read_examples
from hone.data.template import TokenizedExample, tokenize_example
from hone.data.pack import split_validation
from hone.errors import DataError


@dataclass
class PreparedData:
    train: list[TokenizedExample]
    validation: list[TokenizedExample]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        tokens = sum(len(e.input_ids) for e in self.train)
        targets = sum(sum(1 for t in e.labels if t != -100) for e in self.train)
        lines = [f"data: {len(self.train)} train / {len(self.validation)} validation examples, "
                 f"{tokens:,} train tokens ({targets / max(tokens, 1):.0%} with loss)"]
        return "\n".join(lines + [f"  {note}" for note in self.notes])


def prepare_data(data_config, tokenizer, *, seed: int) -> PreparedData:
    """Read, validate, split, template and tokenize; bad lines raise (strict) or are skipped (lenient)."""
    if not data_config.train:
        raise DataError("no training file", where="data.train", hint="set data.train=path/to/train.jsonl")
    notes: list[str] = []
    train = _read(data_config.train, data_config.strict, notes)
    if data_config.validation:
        validation = _read(data_config.validation, data_config.strict, notes)
    elif data_config.validation_fraction > 0:
        train, validation = split_validation(train, data_config.validation_fraction, seed)
        notes.append(f"validation: {len(validation)} examples held out of {data_config.train} "
                     f"(validation_fraction={data_config.validation_fraction})")
    else:
        validation = []
    if data_config.replay:
        from hone.data.replay import replay_examples

        replay = replay_examples(len(train), data_config.replay, seed)
        train = train + replay
        notes.append(f"replay: {len(replay)} general-text examples mixed in (data.replay={data_config.replay})")

    def tokenize(examples):
        out = [tokenize_example(e, tokenizer, loss_on=data_config.loss_on, max_length=data_config.max_length)
               for e in examples]
        truncated = sum(e.truncated for e in out)
        if truncated:
            notes.append(f"{truncated} examples truncated to data.max_length={data_config.max_length}")
        kept = [e for e in out if any(t != -100 for t in e.labels[1:])]
        if len(kept) < len(out):
            notes.append(f"{len(out) - len(kept)} examples dropped: no loss tokens left after truncation")
        return kept

    prepared = PreparedData(tokenize(train), tokenize(validation), notes)
    if not prepared.train:
        raise DataError("no usable training examples", where=data_config.train)
    return prepared


def _read(path: str, strict: bool, notes: list[str]):
    examples, issues = read_examples(path, strict=strict)
    if issues:
        notes.append(f"{path}: skipped {len(issues)} invalid lines (data.strict=false); first: {issues[0]}")
    return examples
