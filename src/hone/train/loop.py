"""The one training loop. Method (what trains) and objective (the loss) are passed in; nothing
here depends on which they are."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hone.config.load import dump_config
from hone.config.schema import RunConfig
from hone.data.pack import plan_batches
from hone.methods import method_for
from hone.models.attention import use_segment_attention
from hone.models.load import load_model, load_tokenizer, resolve_model
from hone.objectives import build_objective
from hone.models.artifact import write_artifact
from hone.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from hone.train.metrics import MetricsLog
from hone.train.optim import build_optimizer, build_scheduler
from hone.train.precision import autocast, prepare_for_precision, resolve_precision


@dataclass
class TrainResult:
    run_dir: Path
    adapter_dir: Path
    steps: int
    metrics: dict
    evaluation: object = None  # the EvalResult on `eval.file`, when the config names one


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))


def run_training(config: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
                 log=print) -> TrainResult:
    """Train `config` into `run_dir` (config.yaml, metrics.jsonl, checkpoints/, adapter/)."""
    set_threads(config.train.threads)
    source = resolve_model(config.model)
    objective = build_objective(config.objective)
    data = objective.prepare(config.data, load_tokenizer(source), seed=config.train.seed)  # fail before any writes
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    log(f"run: {run_dir} (resolved config in config.yaml)")
    log(data.summary())
    model, tokenizer, source = load_model(source)

    method = method_for(config.method.type)
    segmented = use_segment_attention(model)
    torch.manual_seed(config.train.seed)
    model = objective.attach(method.apply(model, config.method), data)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    precision = resolve_precision(config.train.precision)
    prepare_for_precision(model, precision)
    log(f"model: {source.id} ({total / 1e6:.1f}M params), method {config.method.type}: "
        f"{trainable:,} trainable ({trainable / total:.2%}), precision {precision}")

    plan = StepPlan(data.train, objective, config, tokenizer.pad_token_id, segmented)
    optimizer = build_optimizer(model.parameters(), config.train)
    scheduler = build_scheduler(optimizer, config.train, plan.total_steps)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    step = 0
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, model, optimizer, scheduler)["step"]
        log(f"resumed from {checkpoint} (step {step} of {plan.total_steps})")
    elif resume:
        log("no checkpoint found; starting from step 0")
    metrics.truncate_after(step)  # a resumed run rewrites what came after its checkpoint

    validation = objective.validation_batches(data.validation, config.data, tokenizer.pad_token_id, segmented)
    bar = _progress_bar(plan.total_steps, step, progress)
    model.train()
    last_eval = None
    try:
        while step < plan.total_steps:
            started = time.perf_counter()
            record = optimizer_step(model, objective, list(plan.micro_batches(step)), optimizer, scheduler,
                                    precision, config.train.max_grad_norm)
            step += 1
            seconds = time.perf_counter() - started
            record = {"step": step, "epoch": round(plan.epoch_at(step), 4), **record,
                      "tokens_per_s": record["tokens"] / seconds, "seconds": seconds}
            metrics.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if validation and (_every(step, config.train.eval_every) or step == plan.total_steps):
                with autocast(precision):
                    last_eval = evaluate_loss(model, objective, validation)
                metrics.append({"step": step, **last_eval})
                bar.write(f"step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in last_eval.items()
                                                      if isinstance(v, float)))
                model.train()
            if _every(step, config.train.save_every) and step < plan.total_steps:
                save_checkpoint(run_dir, step, model, optimizer, scheduler, {"total_steps": plan.total_steps})
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(run_dir, step, model, optimizer, scheduler, {"total_steps": plan.total_steps})
        log(f"\ninterrupted at step {step}; checkpoint saved. Continue with: hone train --resume {run_dir}")
        raise
    bar.close()
    save_checkpoint(run_dir, step, model, optimizer, scheduler, {"total_steps": plan.total_steps})
    model.eval()
    summary = metrics.summary()
    if last_eval:
        summary.update(last_eval)
    adapter_dir = write_artifact(run_dir / "adapter", model, method, config, source, tokenizer, summary,
                                 objective=objective, data=data)
    return TrainResult(run_dir, adapter_dir, step, summary)


def optimizer_step(model, objective, batches, optimizer, scheduler, precision: str, max_grad_norm) -> dict:
    """One optimizer step over its micro-batches; the loss is normalised by the objective's units
    (target tokens for SFT) summed over all of them, so accumulation equals one big batch."""
    units = sum(objective.units(b) for b in batches)
    loss_sum, tokens, all_parts = 0.0, 0, []
    for batch in batches:
        with autocast(precision):
            loss, parts = objective.loss(model, batch)
        (loss / max(units, 1)).backward()
        loss_sum += parts["loss_sum"]
        tokens += int(batch["n_tokens"])
        all_parts.append(parts)
    grad_norm = _clip(model, max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_sum / max(units, 1)
    return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens, "targets": units,
            **objective.report(all_parts, loss, validation=False)}


class StepPlan:
    """The deterministic sequence of micro-batches: epoch e shuffles with (seed, e); optimizer step s
    takes micro-batches [s * grad_accum, (s + 1) * grad_accum) of the concatenated epochs.

    Batches are planned on the objective's unit lengths and collated by the objective (for SFT: with
    packing and segment attention one row holding all its examples, no padding at all; with packing
    alone rows of `max_length` under a block-diagonal mask; without packing one padded row each).
    """

    def __init__(self, examples, objective, config: RunConfig, pad_id: int, segmented: bool) -> None:
        self.examples = examples
        self.objective = objective
        self.lengths = [objective.length(e) for e in examples]
        self.train = config.train
        self.data = config.data
        self.pad_id = pad_id
        self.segmented = segmented
        self._epochs: dict[int, list[list[int]]] = {}
        per_epoch = len(self._epoch(0))
        self.micro_per_epoch = per_epoch
        steps = math.ceil(config.train.epochs * per_epoch / config.train.grad_accum)
        self.total_steps = config.train.max_steps or steps

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epochs:
            self._epochs = {epoch: plan_batches(self.lengths, batch_size=self.train.batch_size,
                                                batch_tokens=self.train.batch_tokens,
                                                seed=self.train.seed, epoch=epoch)}
        return self._epochs[epoch]

    def epoch_at(self, step: int) -> float:
        return step * self.train.grad_accum / self.micro_per_epoch

    def micro_batches(self, step: int):
        """The collated micro-batches of optimizer step `step`."""
        for index in range(step * self.train.grad_accum, (step + 1) * self.train.grad_accum):
            epoch, offset = divmod(index, self.micro_per_epoch)
            examples = [self.examples[i] for i in self._epoch(epoch)[offset]]
            yield self.objective.collate(examples, self.data, self.pad_id, self.segmented)


@torch.no_grad()
def evaluate_loss(model, objective, batches) -> dict:
    """Mean loss per unit over pre-collated batches and the objective's metrics (val_ppl for SFT)."""
    model.eval()
    loss_sum, units, all_parts = 0.0, 0, []
    for batch in batches:
        _, parts = objective.loss(model, batch)
        loss_sum += parts["loss_sum"]
        units += objective.units(batch)
        all_parts.append(parts)
    loss = loss_sum / max(units, 1)
    extra = objective.report(all_parts, loss, validation=True)
    return {"val_loss": loss, **{f"val_{k}": v for k, v in extra.items()}}


def _clip(model, max_norm: float | None) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
    return float(norm)


def _every(step: int, interval: int | None) -> bool:
    return bool(interval) and step % interval == 0


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)
