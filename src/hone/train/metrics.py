"""`metrics.jsonl`: one JSON object per training step or evaluation, appended as they happen."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """The metrics stream: appended to metrics.jsonl, and passed on to `tracker` (`hone.train.tracking`)."""

    def __init__(self, path: Path, enabled: bool = True, tracker=None) -> None:
        self.path = Path(path)
        self.enabled = enabled  # False on ranks other than 0: one process writes the file
        self.tracker = tracker

    def append(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tracker is not None:
            self.tracker.log(record)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run replays them)."""
        if not self.enabled:
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def summary(self) -> dict:
        steps = [r for r in self.records() if "loss" in r]
        if not steps:
            return {}
        tail = steps[-min(10, len(steps)):]
        tokens = sum(r["tokens"] for r in steps)
        seconds = sum(r["seconds"] for r in steps)
        return {"train_loss": sum(r["loss"] for r in tail) / len(tail), "steps": steps[-1]["step"],
                "train_tokens": tokens, "tokens_per_s": tokens / seconds if seconds else 0.0}
