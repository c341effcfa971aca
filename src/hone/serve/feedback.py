"""Feedback on served responses, and its export as training data for the next round.

The server remembers the last `feedback_window` exchanges in memory only (prompts are never
written to disk unless content logging is on). `POST /v1/feedback` names a response id; the
exchange is then written to the feedback file together with the rating and/or the corrected
answer. `hone feedback export` turns corrected and well-rated exchanges into chat (or
prompt/completion) JSONL that `hone train` reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

from hone.errors import DataError
from hone.paths import private_file


class ResponseMemory:
    """The most recent exchanges by response id (bounded, oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, response_id: str, exchange: dict) -> None:
        with self._lock:
            self._items[response_id] = exchange
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> dict | None:
        with self._lock:
            return self._items.get(response_id)


class FeedbackFile:
    """Append-only JSONL of feedback records (one per POST, the latest per response wins on export)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with private_file(self.path, "a") as f:
                f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}) + "\n")


def export_feedback(path: str | Path, out: str | Path, *, min_rating: int = 4, model: str | None = None,
                    project: str | None = None) -> dict:
    """Write training records from feedback: the corrected answer when given, else the answer
    itself when rated >= `min_rating`; only `model`'s and `project`'s when given. Returns counts
    {read, corrected, well_rated, skipped}."""
    latest: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        raise DataError("no feedback file yet", where=str(path), hint="POST /v1/feedback writes it")
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            latest[record["response_id"]] = {**latest.get(record["response_id"], {}),
                                             **{k: v for k, v in record.items() if v is not None}}
        except (ValueError, KeyError, TypeError):
            raise DataError("not a feedback record", where=f"{path}:{n}") from None
    counts = {"read": len(latest), "corrected": 0, "well_rated": 0, "skipped": 0}
    with open(out, "w", encoding="utf-8") as f:
        for record in latest.values():
            if (model is not None and record.get("model") != model) or \
                    (project is not None and record.get("project") != project):
                counts["skipped"] += 1
                continue
            if record.get("corrected"):
                answer, kind = record["corrected"], "corrected"
            elif (record.get("rating") or 0) >= min_rating:
                answer, kind = record["answer"], "well_rated"
            else:
                counts["skipped"] += 1
                continue
            counts[kind] += 1
            f.write(json.dumps(training_record(record, answer)) + "\n")
    return counts


def training_record(record: dict, answer: str) -> dict:
    if record.get("messages") is not None:
        return {"messages": [*record["messages"], {"role": "assistant", "content": answer}]}
    return {"prompt": record["prompt"], "completion": answer}
