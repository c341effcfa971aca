"""Where and how a run computes: device, precision, and several processes on PyTorch's own engine
(torchrun process groups, DDP or FSDP2), with data sharding, all-reduce helpers and rank-0 guards.

Launch several processes with `hone train --nproc N ...` (torchrun --standalone underneath) or with
torchrun itself. Each optimizer step's examples are dealt round-robin to the ranks (rank r takes
examples r, r+N, ... of every micro-batch), so the global batch is the single-process batch. The
summed loss is divided by the target units of ALL ranks (all-reduced before backward) and multiplied
by N, because DDP and FSDP average gradients over ranks: N processes compute the gradient of one.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

import torch

from hone.data.collate import to_device
from hone.errors import ConfigError
from hone.models.storage import is_nf4
from hone.train.kernels import decoder_layers, use_kernels
from hone.train.precision import HALF, autocast, grad_scaler, resolve_device, resolve_precision


@dataclass
class Runtime:
    device: torch.device
    precision: str
    strategy: str = "none"  # none | ddp | fsdp (none whenever there is one process)
    rank: int = 0
    world: int = 1
    scaler: object = None  # a GradScaler under fp16
    kernels: str = ""  # what `wrap` fused, for the log
    wrapped: object = None  # the module whose forward is a step's loss (DDP / FSDP root when distributed)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return autocast(self.precision, self.device.type)

    def totals(self, *values: float) -> list[float]:
        """Sum each value over all ranks (one all-reduce); the values themselves with one process."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_comm_device(self.device))
        torch.distributed.all_reduce(t)
        return t.tolist()

    def shard(self, examples: list) -> list:
        """This rank's share of one micro-batch. A rank left without examples gets the first one with
        no targets: it still runs forward and backward (the collectives need every rank) and adds 0."""
        mine = examples[self.rank::self.world]
        if mine or not examples:
            return mine
        if not hasattr(examples[0], "labels"):
            raise ConfigError(f"a micro-batch of {len(examples)} units cannot give each of {self.world} processes one",
                              where="train.batch_size", hint="raise train.batch_size to at least the process count")
        return [replace(examples[0], labels=[-100] * len(examples[0].labels))]

    def sync(self, last: bool):
        """Gradient sync only on the last micro-batch of a step (the others accumulate locally)."""
        if self.strategy == "ddp" and not last:
            return self.wrapped.no_sync()
        if self.strategy == "fsdp":
            self.wrapped.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def wrap(self, model, objective, *, checkpointing: bool = False, kernels: str = "none"):
        """Move the model to the device, add activation checkpointing and the resolved fused `kernels`
        (`hone.train.kernels`), wrap it in DDP/FSDP2; returns the objective as the loop calls it (its
        forward through the wrapper)."""
        if checkpointing:
            _enable_checkpointing(model)
        model.to(self.device)
        self.kernels = use_kernels(model, kernels)
        module = ObjectiveModule(model, objective, self.device)
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)
        elif self.strategy == "fsdp":
            module = _fully_shard(module, model, self.precision, self.device, self.world)
        self.wrapped = module
        return StepObjective(objective, module)

    def consolidate(self, model) -> None:
        """After training under FSDP, gather every sharded parameter so rank 0's model holds plain full
        (fp32 master) tensors that `save_pretrained` can write. Collective; the model cannot train after.
        4-bit base weights stay sharded: no artifact holds them (loading quantizes the base again)."""
        if self.strategy != "fsdp":
            return
        from torch.distributed.tensor import DTensor

        for module in model.modules():
            for name, param in list(module._parameters.items()):
                if isinstance(param, DTensor) and not is_nf4(param.to_local()):
                    full = param.full_tensor().detach()
                    if self.main:
                        module._parameters[name] = torch.nn.Parameter(full, requires_grad=param.requires_grad)


class ObjectiveModule(torch.nn.Module):
    """The objective's loss as a module's forward, so DDP's and FSDP's hooks see the whole step
    (the output head included, which the objective applies itself)."""

    def __init__(self, model, objective, device) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.device = device

    def forward(self, batch):
        return self.objective.loss(self.model, to_device(batch, self.device))


class StepObjective:
    """The run's objective, its `loss` computed through the (possibly wrapped) ObjectiveModule."""

    def __init__(self, objective, module) -> None:
        self.objective = objective
        self.module = module

    def units(self, batch) -> int:
        return self.objective.units(batch)

    def loss(self, model, batch):
        return self.module(batch)

    def __getattr__(self, name):  # the rest of the objective (collate, report, save, ...) as it is
        return getattr(self.objective, name)


def start_runtime(train, log=print) -> Runtime:
    """Join the torchrun process group when launched by torchrun, pick device and precision."""
    dist = torch.distributed
    launched = dist.is_available() and dist.is_torchelastic_launched()
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if launched else 0
    device = resolve_device(train.device, local_rank)
    precision = resolve_precision(train.precision, device.type)
    if not launched:
        return Runtime(device, precision, scaler=grad_scaler(precision, device.type))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", device_id=_device_id(device))
    rank, world = dist.get_rank(), dist.get_world_size()
    strategy = train.distributed
    if strategy == "none" and world > 1:
        strategy = "ddp"
        if rank == 0:
            log(f"train.distributed is none but {world} processes were launched: using ddp")
    if device.type == "cpu" and not train.threads:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // local))
    return Runtime(device, precision, strategy, rank, world,
                   grad_scaler(precision, device.type, sharded=strategy == "fsdp"))


def stop_runtime() -> None:
    """Leave the process group (after every rank got here)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_main() -> bool:
    """True in a single process and on rank 0 of a process group."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def full_trainable_state(model) -> dict[str, torch.Tensor]:
    """Trainable parameters by name, whole (FSDP shards gathered; collective), on the CPU."""
    state = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            value = param.full_tensor() if hasattr(param, "full_tensor") else param
            state[name] = value.detach().to("cpu", copy=True).contiguous()
    return state


def full_optimizer_state(model, optimizer) -> dict:
    """The optimizer's state keyed by parameter names and whole (collective under FSDP), so it loads
    into any number of processes; empty on ranks other than 0 when distributed."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    from torch.utils._pytree import tree_map

    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    options = StateDictOptions(full_state_dict=True, cpu_offload=distributed)
    state = get_optimizer_state_dict(model, optimizer, options=options)
    return tree_map(lambda v: v.cpu() if isinstance(v, torch.Tensor) else v, state)  # GPU runs resume anywhere


def load_full_state(model, optimizer, weights: dict, optimizer_state: dict) -> None:
    """Load whole (name-keyed) trainable weights and optimizer state, sharding them where FSDP does."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))





def _enable_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing of every decoder layer (transformers' own hooks)."""
    kwargs = {"use_reentrant": False}
    try:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    except AttributeError:  # transformers before activation_checkpointing_enable
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _fully_shard(module, model, precision: str, device, world: int):
    """FSDP2: each decoder layer is its own sharded group, the rest (embeddings, norm, head) the root's.
    Under bf16/fp16 the weights are gathered in that dtype and gradients reduced in fp32."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    for name, param in model.named_parameters():
        # 4-bit NF4 weights shard by whole rows (each rank's blocks and scales complete)
        if is_nf4(param) and param.shape[0] % world:
            raise ConfigError(f"{name} has {param.shape[0]} rows, which {world} processes cannot share evenly: "
                              "FSDP2 shards 4-bit weights by whole rows", where="train.distributed",
                              hint=f"use a process count that divides {param.shape[0]}, or train.distributed=ddp")
    mesh = init_device_mesh(device.type, (world,))
    policy = MixedPrecisionPolicy(param_dtype=HALF.get(precision), reduce_dtype=torch.float32)
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    return fully_shard(module, mesh=mesh, mp_policy=policy)


def _comm_device(device) -> torch.device:
    return device if device.type == "cuda" else torch.device("cpu")


def _device_id(device):
    return device if device.type == "cuda" else None
