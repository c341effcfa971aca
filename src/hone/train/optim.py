"""Optimizer and learning-rate schedule for the trainable parameters."""

from __future__ import annotations

import math

import torch


def build_optimizer(params, config) -> torch.optim.Optimizer:
    """AdamW (`config.optimizer` picks the kernel, or 8-bit states); weight decay only on matrices
    (not on norms, biases or 1-D adapter vectors)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    name = getattr(config, "optimizer", "adamw")
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=config.lr, betas=(0.9, 0.999))
    # adamw: one fused kernel for all parameters on a GPU (not for FSDP's DTensor shards)
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_cuda and type(p) is torch.nn.Parameter for p in params)
    kernel = {"adamw_fused": {"fused": True}, "adamw_foreach": {"foreach": True}}.get(name, {"fused": fused or None})
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999), **kernel)


def lr_factor(step: int, total_steps: int, schedule: str, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at `step` (0-based): linear warmup, then the schedule."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def build_scheduler(optimizer, config, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config.schedule, config.warmup_steps)
    )
