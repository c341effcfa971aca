"""Grade a file of items: the items and outputs as `hone grader run` reads them, and the summary it prints.

Two shapes of input:
- `hone eval --predictions` output (one JSON object per line holding `prediction`): the item is the
  line without `prediction` (plus `prompt`, the last user message, when it has `messages`), the
  sample is the prediction;
- a file of items (any JSON objects) with a separate `--samples` JSONL of outputs, one per item in
  the same order: each line a JSON string, or an object with `output_text` (or `prediction`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hone.data.prompts import task_item
from hone.data.read import check_file_readable
from hone.errors import DataError
from hone.rewards.grade import Grade


def read_jsonl(path: str | Path) -> list[tuple[str, object]]:
    """(file:line, value) for every non-blank line; a line that is not JSON is a DataError naming it."""
    check_file_readable(path, None)
    rows, problems = [], []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})")
    if problems:
        raise DataError(f"{len(problems)} lines are not JSON", where=str(path), issues=problems)
    if not rows:
        raise DataError("the file has no records", where=str(path))
    return rows


def read_graded_file(path: str | Path, samples_path: str | Path | None = None) -> tuple[list[dict], list]:
    """(items, outputs) from predictions JSONL, or from an items file plus a samples file."""
    rows = read_jsonl(path)
    items, outputs = [], []
    if samples_path is None:
        for where, row in rows:
            if not isinstance(row, dict) or "prediction" not in row:
                raise DataError("no `prediction` in this line", where=where,
                                hint="pass `hone eval --predictions` output, or the model outputs with --samples")
            item = {k: v for k, v in row.items() if k != "prediction"}
            if isinstance(item.get("messages"), list) and "prompt" not in item:
                item = task_item(item["messages"], item.get("reference", ""), item.get("where", where)) | item
            item.setdefault("where", where)
            items.append(item)
            outputs.append(row["prediction"])
        return items, outputs
    samples = read_jsonl(samples_path)
    if len(samples) != len(rows):
        raise DataError(f"{len(samples)} samples for {len(rows)} items", where=str(samples_path),
                        hint="write one output per item, in the same order")
    for (where, row), (sample_where, sample) in zip(rows, samples):
        if not isinstance(row, dict):
            raise DataError("an item must be a JSON object", where=where)
        if isinstance(sample, dict) and "output_text" not in sample and "prediction" in sample:
            sample = {**sample, "output_text": sample["prediction"]}
        if not isinstance(sample, (str, dict)) or (isinstance(sample, dict) and "output_text" not in sample):
            raise DataError("a sample must be a JSON string or an object with output_text", where=sample_where)
        items.append({"where": where, **row})
        outputs.append(sample)
    return items, outputs


@dataclass
class GradeReport:
    grades: list[Grade]
    items: list[dict]

    @property
    def mean(self) -> float:
        return sum(g.score for g in self.grades) / len(self.grades) if self.grades else 0.0

    def metrics(self) -> dict:
        """Mean score, the share of grades that failed to grade (errors), and the count."""
        n = len(self.grades)
        return {"grader_score": self.mean, "grader_errors": sum(g.error for g in self.grades) / max(n, 1), "n": n}

    def to_dict(self) -> dict:
        return {**self.metrics(), "results": [{"where": item.get("where", ""), **grade.to_dict()}
                                              for item, grade in zip(self.items, self.grades)]}

    def render(self, width: int = 100) -> str:
        lines = [f"{'item':<24} {'score':>6}  reason"]
        for i, (item, grade) in enumerate(zip(self.items, self.grades)):
            where = str(item.get("where") or i + 1)[-24:]
            reason = grade.reason if len(grade.reason) <= width - 33 else grade.reason[: width - 34] + "…"
            lines.append(f"{where:<24} {grade.score:>6.3f}  {reason}")
        metrics = self.metrics()
        lines.append(f"mean score {metrics['grader_score']:.4f} over {metrics['n']} items"
                     f" ({sum(g.error for g in self.grades)} could not be graded)")
        return "\n".join(lines)
