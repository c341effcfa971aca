"""Overfitting control the loop consults at each evaluation: early stopping with patience, the best
evaluation so far (its weights become the artifact), and a warning when the train/val gap widens."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hone.data.pack import split_validation
from hone.data.prompts import task_item
from hone.data.read import read_examples
from hone.errors import ConfigError
from hone.evaluate.task import evaluate_task, held_out
from hone.rewards.metric import eval_grader, score_outputs
from hone.train.distributed import barrier, full_trainable_state, is_main


class EarlyStopping:
    """Tracks the best value of one validation score; `should_stop` after `patience` evaluations
    without an improvement of at least `min_delta`. `patience=None` only tracks the best."""

    def __init__(self, metric: str = "val_loss", *, patience: int | None = None, min_delta: float = 0.0) -> None:
        self.metric = metric
        self.higher_is_better = metric != "val_loss"
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0

    def update(self, step: int, value: float) -> bool:
        """Record one evaluation; True when it is the best so far."""
        gain = (value - self.best if self.higher_is_better else self.best - value) if self.best is not None else None
        if gain is None or gain > self.min_delta:
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience

    def state(self) -> dict:
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def restore(self, state: dict) -> None:
        if state.get("metric") == self.metric:
            self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]


class GapMonitor:
    """Warns (once) when validation loss rose at `streak` evaluations in a row while the train/val gap grew."""

    def __init__(self, streak: int = 2) -> None:
        self.streak = streak
        self.history: list[tuple[float, float]] = []  # (train_loss, val_loss)
        self.warned = False

    def update(self, train_loss: float, val_loss: float) -> str | None:
        self.history.append((train_loss, val_loss))
        if self.warned or len(self.history) <= self.streak:
            return None
        recent = self.history[-self.streak - 1:]
        gaps = [v - t for t, v in recent]
        rising = all(b[1] > a[1] for a, b in zip(recent, recent[1:]))
        widening = all(b > a for a, b in zip(gaps, gaps[1:]))
        if rising and widening:
            self.warned = True
            return (f"overfitting: validation loss rose {self.streak} evaluations in a row while train loss fell "
                    f"(gap {gaps[0]:.3f} -> {gaps[-1]:.3f}); consider fewer epochs, a lower lr, "
                    f"train.early_stopping or more data")
        return None


def best_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "best"


def save_best(run_dir: Path, step: int, model, stopper: EarlyStopping) -> None:
    """Keep the best evaluation's trainable weights in checkpoints/best (written atomically; under
    several processes every rank gathers and rank 0 writes)."""
    weights = full_trainable_state(model)
    if is_main():
        _write_best(run_dir, step, weights, stopper)
    barrier()


def _write_best(run_dir: Path, step: int, weights: dict, stopper: EarlyStopping) -> None:
    from safetensors.torch import save_file

    final = best_dir(run_dir)
    tmp = final.with_name(".tmp-best")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, tmp / "trainable.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, **stopper.state()}))
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def load_best(run_dir: Path, model) -> dict | None:
    """Put the best evaluation's weights back into `model`; returns its state (None if there is none)."""
    import torch
    from safetensors.torch import load_file

    folder = best_dir(run_dir)
    if not (folder / "state.json").is_file():
        return None
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(folder / "trainable.safetensors").items():
            params[name].copy_(value)
    return json.loads((folder / "state.json").read_text())


class TaskScore:
    """A task metric on validation examples (generated greedily), for early stopping on e.g. field_accuracy."""

    def __init__(self, config, tokenizer) -> None:
        data = config.data
        if data.validation:
            examples, _ = read_examples(data.validation, strict=data.strict)
        else:
            examples = split_validation(read_examples(data.train, strict=data.strict)[0],
                                        data.validation_fraction, config.train.seed)[1]
        chats = [e for e in examples if e.messages and e.messages[-1]["role"] == "assistant"]
        self.items = [held_out(e) for e in chats][:config.train.early_stopping.max_items]
        self.grader, self.key = eval_grader(config.eval.metric, config.eval.grader), config.train.early_stopping.metric
        self.max_new_tokens, self.tokenizer = config.eval.max_new_tokens, tokenizer
        first = [task_item(self.items[0].messages, self.items[0].reference)] if self.items else []
        keys = [k for k in score_outputs(self.grader, [i["reference"] for i in first], first)[1] if k != "n"]
        if not self.items or self.key not in keys:
            name = "eval.grader" if config.eval.grader is not None else f"eval.metric={config.eval.metric}"
            raise ConfigError(f"cannot stop early on {self.key!r}", where="train.early_stopping.metric",
                              hint=f"use val_loss or a key of {name}: {', '.join(keys) or 'none'}"
                                   + ("" if self.items else " (and give chat validation examples)"))

    def __call__(self, model) -> float:
        result = evaluate_task(model, self.tokenizer, self.items, grader=self.grader,
                               max_new_tokens=self.max_new_tokens, progress=False)
        return float(result.metrics[self.key])


class ValidationWatch:
    """What the loop asks after each validation: record the score, keep the best weights, warn on a
    widening gap, and whether to stop. `finish` restores the best weights for the artifact."""

    def __init__(self, config, run_dir: Path, tokenizer, has_validation: bool, *, resumed_step: int = 0,
                 log=print) -> None:
        stopping = config.train.early_stopping
        if stopping is not None and not has_validation:
            raise ConfigError("early stopping needs validation data", where="train.early_stopping",
                              hint="set data.validation or data.validation_fraction > 0")
        if stopping is not None and not config.train.eval_every:
            raise ConfigError("early stopping needs evaluations during training", where="train.early_stopping",
                              hint="set train.eval_every=N")
        self.run_dir, self.log = Path(run_dir), log
        self.keep_best = config.train.best_checkpoint and has_validation
        self.stopper = EarlyStopping(stopping.metric if stopping else "val_loss",
                                     patience=stopping.patience if stopping else None,
                                     min_delta=stopping.min_delta if stopping else 0.0)
        self.task = TaskScore(config, tokenizer) if stopping and stopping.metric != "val_loss" else None
        self.gap = GapMonitor()
        self.last_eval_step = resumed_step
        state = best_dir(run_dir) / "state.json"
        if resumed_step and state.is_file() and json.loads(state.read_text())["step"] <= resumed_step:
            self.stopper.restore(json.loads(state.read_text()))

    def after_eval(self, step: int, record: dict, model, metrics_log) -> dict:
        """Extra fields for the evaluation's metrics record (task score, best, warning)."""
        extra: dict = {}
        if self.task is not None:
            extra[f"val_{self.task.key}"] = value = self.task(model)
        else:
            value = record["val_loss"]
        losses = [r["loss"] for r in metrics_log.records() if "loss" in r and self.last_eval_step < r["step"] <= step]
        self.last_eval_step = step
        if self.stopper.update(step, value):
            extra["best"] = True
            if self.keep_best:
                save_best(self.run_dir, step, model, self.stopper)
        warning = self.gap.update(sum(losses) / len(losses), record["val_loss"]) if losses else None
        if warning:
            extra["warning"] = warning
            self.log(f"warning: {warning}")
        return extra

    @property
    def should_stop(self) -> bool:
        return self.stopper.should_stop

    def finish(self, model, step: int, *, restore: bool = True) -> dict:
        """Load the best evaluation's weights (when it is not the last step and `restore`) and summarise."""
        summary: dict = {}
        if self.stopper.best_step is not None:
            summary = {"best_step": self.stopper.best_step, f"best_{self.stopper.metric}": self.stopper.best}
        if self.should_stop:
            summary["stopped_early_at"] = step
        if (restore and self.keep_best and self.stopper.best_step not in (None, step)
                and load_best(self.run_dir, model)):
            self.log(f"artifact from the best evaluation: step {self.stopper.best_step} "
                     f"({self.stopper.metric} {self.stopper.best:.4f})")
        if self.gap.warned:
            summary["overfitting_warning"] = True
        return summary
