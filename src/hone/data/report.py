"""`hone data check FILE`: everything wrong or notable about a data file, before any compute is spent."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace

from hone.data.formats import Example, example_image_parts, example_key
from hone.data.images import FileResolver, ImageLimits, load_image
from hone.data.pairs import tokenize_pair
from hone.data.prepare import expected_shapes, wrong_format_issue
from hone.data.read import Issue, iter_records
from hone.data.record_errors import RecordError
from hone.data.template import IGNORE, TokenizedExample, prompt_ids, tokenize_example
from hone.data.vision import processor_for
from hone.errors import DataError, HoneError


@dataclass
class DataReport:
    """What `check_file` found: counts, every issue, duplicates, and token statistics when tokenized."""

    path: str
    lines: int = 0  # non-blank lines, i.e. records
    valid: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    first_lines: dict[str, int] = field(default_factory=dict)  # format -> the first line holding one
    issues: list[Issue] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, line it repeats)
    max_length: int | None = None
    token_stats: dict[str, float] | None = None  # count, min, mean, p50, p95, max
    target_tokens: int | None = None  # tokens trained on, after truncation
    truncated: list[tuple[int, int]] = field(default_factory=list)  # (line, full length in tokens)
    untrainable: list[int] = field(default_factory=list)  # lines with no target left after truncation
    image_token_stats: dict[str, float] | None = None  # per example with images: count, min, mean, ..., max
    images_untokenized: int = 0  # examples with images not tokenized: the tokenizer's model has no vision tower
    objective: str | None = None  # when given, records of formats it does not train on are issues
    expects: str | None = None  # the shapes that objective takes
    misfits: list[int] = field(default_factory=list)  # lines of a format the objective does not take

    @property
    def ok(self) -> bool:
        """True when there are records, all valid; duplicates and truncation are warnings only."""
        return self.valid > 0 and not self.issues

    def to_dict(self) -> dict:
        """A JSON-able dict (issues as objects, tuples as lists) with `ok` included."""
        data = asdict(self)
        data["duplicates"] = [list(pair) for pair in self.duplicates]
        data["truncated"] = [list(pair) for pair in self.truncated]
        data["ok"] = self.ok
        return data

    def render(self) -> str:
        """A readable report: a summary block, then every issue as `file:line: field: message`."""
        invalid = self.lines - self.valid
        out = [f"{self.path}: {self.lines} records, {self.valid} valid, {invalid} invalid"]
        if self.formats:
            out.append("  formats: " + ", ".join(f"{name} {count}" for name, count in sorted(self.formats.items())))
        if self.duplicates:
            shown = ", ".join(f"line {line} repeats line {first}" for line, first in self.duplicates[:5])
            more = f", and {len(self.duplicates) - 5} more" if len(self.duplicates) > 5 else ""
            out.append(f"  duplicates: {len(self.duplicates)} ({shown}{more})")
        if self.token_stats:
            s = self.token_stats
            out.append(
                f"  tokens per example: min {s['min']:.0f}, mean {s['mean']:.1f}, p50 {s['p50']:.0f}, "
                f"p95 {s['p95']:.0f}, max {s['max']:.0f} over {s['count']:.0f} examples; "
                f"{self.target_tokens} target tokens"
            )
        if self.image_token_stats:
            s = self.image_token_stats
            out.append(f"  image tokens per example: min {s['min']:.0f}, mean {s['mean']:.1f}, max {s['max']:.0f} "
                       f"over {s['count']:.0f} examples with images")
        if self.images_untokenized:
            out.append(f"  examples with images not tokenized: {self.images_untokenized} (the model has no vision "
                       "tower; pass --model a vision-language model for their token counts)")
        if self.truncated:
            shown = ", ".join(f"line {line} ({length} tokens)" for line, length in self.truncated[:5])
            more = f", and {len(self.truncated) - 5} more" if len(self.truncated) > 5 else ""
            out.append(f"  truncated to max_length={self.max_length}: {len(self.truncated)} ({shown}{more})")
        if self.untrainable:
            lines = ", ".join(str(line) for line in self.untrainable[:10])
            out.append(f"  no target tokens left after truncation: {len(self.untrainable)} (lines {lines})")
        if self.issues:
            out.append(f"issues ({len(self.issues)}):")
            out += [f"  {issue}" for issue in self.issues]
            if self.misfits:
                out.append(f"  hint: {self.expects}")
        out.append("ok" if self.ok else "not ok")
        return "\n".join(out)


def check_file(path, tokenizer=None, *, max_length: int = 512, loss_on: str = "assistant",
               objective: str | None = None, formats: tuple[str, ...] | None = None,
               limits: ImageLimits = ImageLimits(), files: FileResolver | None = None) -> DataReport:
    """Read a data file leniently and report on it; never raises for bad lines or a bad file.

    A missing, oversized or empty file becomes an issue at line 0. With a tokenizer, each valid
    example is also templated and tokenized: its full length goes into the statistics, lengths
    over `max_length` are listed as truncated, and template failures become issues on that line.
    With an `objective` and the `formats` it trains on, a record of another format is an issue too
    (a user-only conversation is a graded prompt, which SFT cannot learn from). Every image is read
    and decoded (paths relative to the file's folder, uploaded ids through `files`): an unreadable,
    corrupt, oversized or unsupported image, or more than `limits.max_images` in one example, is an
    issue on its line.
    """
    report = DataReport(path=str(path), max_length=max_length if tokenizer is not None else None,
                        objective=objective, expects=expected_shapes(formats, objective) if formats else None)
    formats_seen: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    lengths: list[int] = []
    image_tokens: list[int] = []
    targets = 0
    try:
        for line, result in iter_records(path):
            report.lines += 1
            if isinstance(result, Issue):
                report.issues.append(result)
                continue
            if formats and result.format not in formats:
                report.issues.append(wrong_format_issue(path, line, result.format, formats, objective))
                report.misfits.append(line)
                formats_seen[result.format] += 1
                continue
            image_issue = check_images(result, Path(path).parent, limits, files)
            if image_issue is not None:
                report.issues.append(Issue(str(path), line, image_issue.field, image_issue.message))
                continue
            if tokenizer is not None and result.images and processor_for(tokenizer) is None:
                report.images_untokenized += 1
            elif tokenizer is not None:
                try:
                    tokens = tokenize_for_report(result, tokenizer, loss_on)
                except HoneError as error:
                    report.issues.append(Issue(str(path), line, "", error.what))
                    continue
                if tokens.images_end > max_length:
                    report.issues.append(Issue(str(path), line, "", f"the images take tokens up to {tokens.images_end}, "
                                               f"beyond max_length={max_length}; training would have to cut an image"))
                    continue
                lengths.append(len(tokens.input_ids))
                if tokens.images:
                    image_tokens.append(tokens.image_tokens)
                kept = sum(label != IGNORE for label in tokens.labels[:max_length])
                targets += kept
                if len(tokens.input_ids) > max_length:
                    report.truncated.append((line, len(tokens.input_ids)))
                    if kept == 0:
                        report.untrainable.append(line)
            report.valid += 1
            formats_seen[result.format] += 1
            report.first_lines.setdefault(result.format, line)
            key = example_key(result)
            if key in first_line:
                report.duplicates.append((line, first_line[key]))
            else:
                first_line[key] = line
    except DataError as error:
        report.issues.append(Issue(str(path), 0, "", error.what))
    if report.lines == 0 and not report.issues:
        report.issues.append(Issue(str(path), 0, "", "the file has no records; write one JSON object per line"))
    report.formats = dict(formats_seen)
    if tokenizer is not None:
        report.token_stats = length_stats(lengths)
        report.image_token_stats = length_stats(image_tokens)
        report.target_tokens = targets
    return report


def check_images(example: Example, base_dir: Path, limits: ImageLimits,
                 files: FileResolver | None) -> RecordError | None:
    """The first thing wrong with an example's images (their count, then each image read and decoded)."""
    parts = example_image_parts(example)
    if len(parts) > limits.max_images:
        return RecordError(parts[limits.max_images]["field"], f"is one image too many: the example holds {len(parts)} "
                           f"images; at most {limits.max_images} are allowed (data.max_images)")
    for part in parts:
        try:
            load_image(part["url"], field=part["field"], base_dir=base_dir, files=files, limits=limits)
        except RecordError as error:
            return error
    return None


def tokenize_for_report(example, tokenizer, loss_on: str):
    """The example as training sees it; a preference pair by its longer side (prompt + reply), a graded
    prompt as the tokens generation starts from (no targets: GRPO samples its replies)."""
    if example.format == "graded_prompt" and example.images:  # an eval prompt with pictures: no targets
        tokens = tokenize_example(Example(format="chat", messages=example.messages, where=example.where), tokenizer)
        return replace(tokens, labels=[IGNORE] * len(tokens.labels))
    if example.format == "graded_prompt":
        ids = prompt_ids(example.messages, tokenizer)
        return TokenizedExample(ids, [IGNORE] * len(ids), example.where)
    if example.format == "preference":
        pair = tokenize_pair(example, tokenizer, max_length=None)
        return max(pair.chosen, pair.rejected, key=lambda side: len(side.input_ids))
    if example.format == "judged":
        example = Example(format="chat", messages=[*example.messages, *example.completion], where=example.where)
    return tokenize_example(example, tokenizer, loss_on=loss_on)


def length_stats(lengths: list[int]) -> dict[str, float] | None:
    """count, min, mean, p50, p95 and max of token lengths (nearest-rank percentiles); None if empty."""
    if not lengths:
        return None
    ordered = sorted(lengths)

    def percentile(q: float) -> int:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {
        "count": len(ordered),
        "min": ordered[0],
        "mean": sum(ordered) / len(ordered),
        "p50": percentile(0.5),
        "p95": percentile(0.95),
        "max": ordered[-1],
    }
