"""Experiment tracking fed from the metrics stream: every record `MetricsLog` appends (a step's loss,
learning rate, token accuracy, tokens/s; an evaluation's val_* scores) also goes to a tracker.

TensorBoard event files are written offline by tensorboardX (the `tracking` extra), under
RUN/tracking/PROJECT/NAME; `tensorboard --logdir RUN/tracking` shows them. The fine-tuning service
turns a job's `integrations: [{"type": "wandb", ...}]` into this (`hone.jobs.service`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from hone.config.schema import TrackingConfig
from hone.errors import ConfigError

SKIPPED = ("step", "total_steps", "time")  # the x axis, a constant, the wall clock


class Tracker(Protocol):
    def log(self, record: dict) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    """Each numeric field of a record as a scalar at the record's step, written at once."""

    def __init__(self, folder: Path, labels: list[str]) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError("train.tracking.type tensorboard needs tensorboardX: pip install 'hone[tracking]'",
                              where="train.tracking") from None
        self.folder = folder
        self.writer = SummaryWriter(str(folder))
        if labels:
            self.writer.add_text("labels", ", ".join(labels), 0)

    def log(self, record: dict) -> None:
        step = int(record.get("step", 0))
        for key, value in record.items():
            if key not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(config: TrackingConfig | None, run_dir: Path, run_name: str) -> Tracker | None:
    """The tracker `train.tracking` asks for (None when it is not set)."""
    if config is None:
        return None
    labels = ([f"entity:{config.entity}"] if config.entity else []) + list(config.tags)
    return TensorBoardTracker(Path(run_dir) / "tracking" / config.project / (config.name or run_name), labels)
