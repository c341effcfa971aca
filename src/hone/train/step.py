"""One optimizer step over its micro-batches, and the deterministic plan of those micro-batches.

The training loop and the estimate's calibration both run these, so a measured step is a real one.
"""

from __future__ import annotations

import math

import torch

from hone.config.schema import RunConfig
from hone.data.batching import Batching
from hone.data.pack import plan_batches
from hone.train.distributed import Runtime


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

    def __init__(self, examples, objective, config: RunConfig, batching: Batching, shard=None) -> None:
        self.examples = examples
        self.objective = objective
        self.lengths = [objective.length(e) for e in examples]
        self.train = config.train
        self.batching = batching
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
            yield self.objective.collate(examples, self.batching)


def _clip(model, max_norm: float | None) -> float:
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)  # FSDP: a DTensor
