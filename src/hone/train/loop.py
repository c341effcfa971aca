"""The one training loop. Method (what trains) and objective (the loss) are passed in; nothing
here depends on which they are."""

from __future__ import annotations

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
from hone.models.estimate import check_fits, stored_bytes
from hone.models.load import load_model, load_tokenizer, resolve_model
from hone.objectives import build_objective
from hone.models.artifact import write_artifact
from hone.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, write_checkpoint_model
from hone.train.distributed import Runtime, barrier, start_runtime, stop_runtime
from hone.train.metrics import MetricsLog
from hone.train.optim import build_optimizer, build_scheduler
from hone.train.overfit import ValidationWatch
from hone.train.precision import prepare_for_precision
from hone.train.regularize import L2SP
from hone.train.tracking import open_tracker


@dataclass
class TrainResult:
    run_dir: Path
    adapter_dir: Path
    steps: int
    metrics: dict
    evaluation: object = None  # the EvalResult on `eval.file`, when the config names one
    status: str = "succeeded"  # or "failed the forgetting gate"
    rank: int = 0  # this process's rank under torchrun (0 alone wrote the artifacts)


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))


def run_training(config: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
                 log=print) -> TrainResult:
    """Train `config` into `run_dir` (config.yaml, metrics.jsonl, checkpoints/, adapter/).

    Under torchrun every process calls this; rank 0 alone logs and writes (`hone.train.distributed`).
    """
    set_threads(config.train.threads)
    source = resolve_model(config.model)
    objective = build_objective(config.objective)
    data = objective.prepare(config.data, load_tokenizer(source), seed=config.train.seed)  # fail before any writes
    runtime = start_runtime(config.train, log)
    try:
        return _train(config, run_dir, runtime, source, objective, data, resume, progress and runtime.main,
                      log if runtime.main else _silent)
    finally:
        stop_runtime()


def _silent(*args, **kwargs) -> None:
    pass


def _train(config: RunConfig, run_dir: Path, runtime: Runtime, source, objective, data, resume: bool,
           progress: bool, log) -> TrainResult:
    if runtime.main:
        # prints the estimate (per process) and refuses what cannot fit
        check_fits(config, source, data.train, log, processes=runtime.world, device=runtime.device)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(config))
    log(f"run: {run_dir} (resolved config in config.yaml)")
    log(data.summary())
    model, tokenizer, source = load_model(source)

    method = method_for(config.method.type)
    segmented = use_segment_attention(model)
    torch.manual_seed(config.train.seed)
    base_params = {id(p) for p in model.parameters()}
    model = objective.attach(method.apply(model, config.method), data)
    if hasattr(method, "describe"):
        log(method.describe(model))
    regularizer = L2SP.from_model(model, base_params, config.train.l2sp) if config.train.l2sp else None
    if regularizer is not None and not regularizer.params:
        log(f"train.l2sp: no trainable parameter of method {config.method.type} has a base value; no penalty")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    precision = runtime.precision
    prepare_for_precision(model, precision, keep_frozen_fp32=runtime.strategy == "fsdp")
    log(f"model: {source.id} ({total / 1e6:.1f}M params), method {config.method.type}: "
        f"{trainable:,} trainable ({trainable / total:.2%}), precision {precision}, device {runtime.device}"
        + (f", {runtime.strategy} over {runtime.world} processes" if runtime.world > 1 else ""))
    whole = sum(map(stored_bytes, model.parameters())) if runtime.strategy == "fsdp" else None
    objective = runtime.wrap(model, objective, checkpointing=config.train.gradient_checkpointing,
                             compile=config.train.compile)
    if runtime.strategy == "fsdp":
        log(f"fsdp: this process holds {sum(map(stored_bytes, model.parameters())) / 2**20:.2f} MiB of the "
            f"weights' {whole / 2**20:.2f} MiB")

    plan = StepPlan(data.train, objective, config, tokenizer.pad_token_id, segmented, shard=runtime.shard)
    optimizer = build_optimizer(model.parameters(), config.train)
    scheduler = build_scheduler(optimizer, config.train, plan.total_steps)
    tracker = open_tracker(config.train.tracking, run_dir, config.name or run_dir.name) if runtime.main else None
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=runtime.main, tracker=tracker)
    if hasattr(objective, "begin"):  # sees the start model, on its device, before a checkpoint is restored
        with runtime.autocast():
            objective.begin(model, data, config.data, tokenizer.pad_token_id, segmented)
    step = 0
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, model, optimizer, scheduler, runtime.scaler)["step"]
        log(f"resumed from {checkpoint} (step {step} of {plan.total_steps})")
    elif resume:
        log("no checkpoint found; starting from step 0")
    metrics.truncate_after(step)  # a resumed run rewrites what came after its checkpoint

    validation = objective.validation_batches(data.validation, config.data, tokenizer.pad_token_id, segmented)
    watch = ValidationWatch(config, run_dir, tokenizer, bool(validation), resumed_step=step, log=log)
    bar = _progress_bar(plan.total_steps, step, progress)

    def save_step() -> None:
        """A checkpoint at `step`, and its servable copy when train.checkpoint_models asks for one."""
        save_checkpoint(run_dir, step, model, optimizer, scheduler, {"total_steps": plan.total_steps},
                        runtime.scaler)
        if config.train.checkpoint_models and runtime.main and runtime.strategy != "fsdp":
            write_checkpoint_model(run_dir, step, config.train.checkpoint_models, model, method, config, source,
                                   tokenizer, metrics.summary(), objective=objective, data=data)

    model.train()
    last_eval = None
    try:
        while step < plan.total_steps:
            started = time.perf_counter()
            record = optimizer_step(model, objective, list(plan.micro_batches(step)), optimizer, scheduler,
                                    runtime, config.train.max_grad_norm, regularizer)
            step += 1
            seconds = time.perf_counter() - started
            record = {"step": step, "total_steps": plan.total_steps, "epoch": round(plan.epoch_at(step), 4), **record,
                      "tokens_per_s": record["tokens"] / seconds, "seconds": seconds, "time": round(time.time(), 3)}
            metrics.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if validation and (_every(step, config.train.eval_every) or step == plan.total_steps):
                with runtime.autocast():
                    last_eval = evaluate_loss(model, objective, validation)
                last_eval.update(watch.after_eval(step, last_eval, model, metrics))
                metrics.append({"step": step, **last_eval})
                (bar.write if runtime.main else _silent)(
                    f"step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in last_eval.items() if isinstance(v, float)))
                model.train()
                if watch.should_stop:
                    bar.write(f"early stopping at step {step}: no better {watch.stopper.metric} since step "
                              f"{watch.stopper.best_step}")
                    break
            if _every(step, config.train.save_every) and step < plan.total_steps:
                save_step()
    except KeyboardInterrupt:
        bar.close()
        metrics.close()
        save_step()
        log(f"\ninterrupted at step {step}; checkpoint saved. Continue with: hone train --resume {run_dir}")
        raise
    bar.close()
    metrics.close()
    save_step()
    model.eval()
    summary = metrics.summary()
    if last_eval:
        summary.update({k: v for k, v in last_eval.items() if k not in ("best", "warning")})
    runtime.consolidate(model)  # under FSDP, rank 0 now holds whole tensors (and alone writes the artifact)
    summary.update(watch.finish(model, step, restore=runtime.main))
    adapter_dir = run_dir / "adapter"
    if runtime.main:
        write_artifact(adapter_dir, model, method, config, source, tokenizer, summary, objective=objective, data=data)
    barrier()
    return TrainResult(run_dir, adapter_dir, step, summary, rank=runtime.rank)


def optimizer_step(model, objective, batches, optimizer, scheduler, runtime: Runtime, max_grad_norm,
                   regularizer=None) -> dict:
    """One optimizer step over its micro-batches; the loss is normalised by the objective's units
    (target tokens for SFT) summed over all of them and over all ranks, so accumulation and N
    processes equal one big batch (DDP/FSDP average gradients over ranks, hence the factor N)."""
    (units,) = runtime.totals(sum(objective.units(b) for b in batches))
    scale = runtime.world / max(units, 1)
    loss_sum, tokens, all_parts = 0.0, 0, []
    for i, batch in enumerate(batches):
        with runtime.sync(last=i == len(batches) - 1):
            with runtime.autocast():
                loss, parts = objective.loss(model, batch)
            loss = loss * scale
            (runtime.scaler.scale(loss) if runtime.scaler else loss).backward()
        loss_sum += parts["loss_sum"]
        tokens += int(batch["n_tokens"])
        all_parts.append(parts)
    extra = {"l2sp": regularizer.add_gradient()} if regularizer is not None else {}
    loss_sum, tokens = runtime.totals(loss_sum, tokens)
    if runtime.scaler:
        runtime.scaler.unscale_(optimizer)
    grad_norm = _clip(model, max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    if runtime.scaler:
        runtime.scaler.step(optimizer)
        runtime.scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_sum / max(units, 1)
    return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": int(tokens), "targets": int(units), **extra,
            **objective.report(all_parts, loss, validation=False)}


class StepPlan:
    """The deterministic sequence of micro-batches: epoch e shuffles with (seed, e); optimizer step s
    takes micro-batches [s * grad_accum, (s + 1) * grad_accum) of the concatenated epochs.

    Batches are planned on the objective's unit lengths and collated by the objective (for SFT: with
    packing and segment attention one row holding all its examples, no padding at all; with packing
    alone rows of `max_length` under a block-diagonal mask; without packing one padded row each).
    """

    def __init__(self, examples, objective, config: RunConfig, pad_id: int, segmented: bool, shard=None) -> None:
        self.examples = examples
        self.objective = objective
        self.lengths = [objective.length(e) for e in examples]
        self.train = config.train
        self.data = config.data
        self.pad_id = pad_id
        self.segmented = segmented
        self.shard = shard or (lambda examples: examples)  # this process's share of a micro-batch
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
            examples = self.shard([self.examples[i] for i in self._epoch(epoch)[offset]])
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
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a DTensor


def _every(step: int, interval: int | None) -> bool:
    return bool(interval) and step % interval == 0


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)
