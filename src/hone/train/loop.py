"""The one training loop. Method (what trains) and objective (the loss) are passed in; nothing
here depends on which they are."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hone.config.load import dump_config
from hone.config.schema import RunConfig
from hone.data.batching import Batching
from hone.methods import method_for
from hone.data.template_check import check_template
from hone.data.templates import apply_data_template
from hone.models.families import check_trainable
from hone.models.artifact import write_artifact
from hone.models.attention import use_segment_attention
from hone.models.load import load_model, load_tokenizer, resolve_model, set_threads
from hone.models.storage import stored_bytes
from hone.objectives import build_objective
from hone.train.checkpoint import (latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint,
                                   write_checkpoint_model)
from hone.train.distributed import Runtime, barrier, start_runtime, stop_runtime
from hone.train.estimate import check_fits
from hone.train.kernels import resolve_kernels
from hone.train.metrics import MetricsLog
from hone.train.optim import build_optimizer, build_scheduler
from hone.train.overfit import ValidationWatch
from hone.train.precision import prepare_for_precision
from hone.train.regularize import L2SP
from hone.train.step import StepPlan, optimizer_step
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


def run_training(config: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
                 log=print) -> TrainResult:
    """Train `config` into `run_dir` (config.yaml, metrics.jsonl, checkpoints/, adapter/).

    Under torchrun every process calls this; rank 0 alone logs and writes (`hone.train.distributed`).
    """
    set_threads(config.train.threads)
    source = resolve_model(config.model)
    objective = build_objective(config.objective)
    tokenizer = apply_data_template(load_tokenizer(source), config.data)
    check_template(tokenizer, source.id, system=False)  # system prompts: checked per conversation
    data = objective.prepare(config.data, tokenizer, seed=config.train.seed)  # fail before any writes
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
    apply_data_template(tokenizer, config.data)
    check_trainable(model.config, config.objective.type)

    method = method_for(config.method.type)
    batching = Batching.for_run(config.data, tokenizer.pad_token_id, use_segment_attention(model))
    torch.manual_seed(config.train.seed)
    base_params = {id(p) for p in model.parameters()}
    model = objective.attach(method.apply(model, config.method), data)
    description = method.describe(model)
    if description:
        log(description)
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
    kernels = resolve_kernels("compile" if config.train.compile else config.train.kernels, runtime.device.type,
                              getattr(model.config, "model_type", None))
    objective = runtime.wrap(model, objective, checkpointing=config.train.gradient_checkpointing, kernels=kernels)
    log(runtime.kernels)
    if runtime.strategy == "fsdp":
        log(f"fsdp: this process holds {sum(map(stored_bytes, model.parameters())) / 2**20:.2f} MiB of the "
            f"weights' {whole / 2**20:.2f} MiB")

    plan = StepPlan(data.train, objective, config, batching, shard=runtime.shard)
    optimizer = build_optimizer(model.parameters(), config.train)
    scheduler = build_scheduler(optimizer, config.train, plan.total_steps)
    tracker = open_tracker(config.train.tracking, run_dir, config.name or run_dir.name) if runtime.main else None
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=runtime.main, tracker=tracker)
    objective.accumulate(config.train.grad_accum)
    with runtime.autocast():  # the objective sees the start model, on its device, before a checkpoint is restored
        objective.begin(model, data, batching, method)
    step = 0
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, model, optimizer, scheduler, runtime.scaler)["step"]
        log(f"resumed from {checkpoint} (step {step} of {plan.total_steps})")
    elif resume:
        log("no checkpoint found; starting from step 0")
    metrics.truncate_after(step)  # a resumed run rewrites what came after its checkpoint

    validation = objective.validation_batches(data.validation, batching)
    watch = ValidationWatch(config, run_dir, tokenizer, bool(validation), resumed_step=step, log=log)
    bar = _progress_bar(plan.total_steps, step, progress)

    def save(at: int, *, checkpoint: bool = True) -> None:
        """A checkpoint at `at` (kept as train.keep_checkpoints says), and its servable copy when
        train.checkpoint_models asks for one."""
        if checkpoint:
            save_checkpoint(run_dir, at, model, optimizer, scheduler, {"total_steps": plan.total_steps},
                            runtime.scaler, keep=config.train.keep_checkpoints)
        if config.train.checkpoint_models and runtime.main and runtime.strategy != "fsdp":
            write_checkpoint_model(run_dir, at, config.train.checkpoint_models, model, method, config, source,
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
                save(step)
    except KeyboardInterrupt:
        bar.close()
        metrics.close()
        save(step)
        log(f"\ninterrupted at step {step}; checkpoint saved. Continue with: hone train --resume {run_dir}")
        raise
    bar.close()
    metrics.close()
    save(step, checkpoint=bool(config.train.save_every and config.train.keep_checkpoints))
    model.eval()
    summary = metrics.summary()
    if last_eval:
        summary.update({k: v for k, v in last_eval.items() if k not in ("best", "warning")})
    runtime.consolidate(model)  # under FSDP, rank 0 now holds whole tensors (and alone writes the artifact)
    summary.update(watch.finish(model, step, restore=runtime.main))
    adapter_dir = run_dir / "adapter"
    if runtime.main:
        write_artifact(adapter_dir, model, method, config, source, tokenizer, summary, objective=objective, data=data)
        prune_checkpoints(run_dir, config.train.keep_checkpoints if config.train.save_every else 0)
    barrier()
    return TrainResult(run_dir, adapter_dir, step, summary, rank=runtime.rank)


def describe_run_dir(run_dir: Path) -> str:
    """What a run left on disk, with sizes: each top-level entry, and each checkpoint on its own line."""
    run_dir = Path(run_dir)
    entries = []
    for path in sorted(run_dir.iterdir()):
        entries += sorted(path.iterdir()) if path.name == "checkpoints" and path.is_dir() else [path]
    sizes = {path: _disk_bytes(path) for path in entries}
    width = max((len(str(p.relative_to(run_dir))) for p in entries), default=0) + 2
    lines = [f"wrote {run_dir}/ ({_human(sum(sizes.values()))}):"]
    lines += [f"  {str(p.relative_to(run_dir)) + '/' * p.is_dir():<{width}}{_human(size):>10}"
              for p, size in sizes.items()]
    return "\n".join(lines)


def _disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024


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


def _every(step: int, interval: int | None) -> bool:
    return bool(interval) and step % interval == 0


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)
