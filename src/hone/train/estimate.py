"""Memory and time of a run before it starts: per tuning method, from the model's shapes and a short
measured calibration.

The analytical part builds the model on PyTorch's `meta` device (no weights are read), applies the
method and counts what `requires_grad` says trains, so it works for any registered method.
Activations follow what hone's loop really keeps per micro-batch: with segment attention a packed
micro-batch is one row of its tokens (attention costs no (L x L) matrix), the fused chunked
cross-entropy never holds more than one chunk of logits, and under bf16 autocast the matmul outputs
are bf16 while the residual stream stays fp32. Decoder blocks below the first trainable parameter
keep nothing for backward. The calibration runs a few real optimizer steps of the real loop pieces
(`hone.train.step`) and times them.

The totals are the bytes the loop holds at its peak. glibc's malloc raises its mmap threshold after
the first large free and then serves activations from its heap, whose freed holes it keeps: peak
RSS from the second step on can then reach about twice the activations. With
`MALLOC_MMAP_THRESHOLD_=131072` in the environment, RSS follows the estimate (tested within 25 %).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass, field

from hone.config.schema import RunConfig
from hone.data.batching import Batching
from hone.data.pack import pack_rows, plan_batches
from hone.data.prepare import PreparedData
from hone.data.template import TokenizedExample
from hone.errors import ConfigError, HoneError, ResourceError
from hone.methods import METHODS, method_for
from hone.models.attention import use_segment_attention
from hone.models.load import load_model, resolve_model
from hone.models.storage import stored_bytes
from hone.models.vision import model_class
from hone.objectives import build_objective
from hone.train.distributed import start_runtime
from hone.train.optim import build_optimizer, build_scheduler
from hone.train.precision import prepare_for_precision, resolve_precision
from hone.train.step import StepPlan, optimizer_step

GIB = 1 << 30
# Optimizer state bytes per trainable element (AdamW keeps two moments in the parameter's dtype).
OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw_fused": 8, "adamw_foreach": 8, "adamw_8bit": 2}


@dataclass
class Workload:
    """The biggest micro-batch of a run and how many optimizer steps make an epoch."""

    rows: int
    row_length: int
    tokens: int  # real tokens in the biggest micro-batch (what activations scale with)
    targets: int
    steps_per_epoch: int | None  # None without a data file
    from_data: bool


@dataclass
class MethodEstimate:
    method: str
    trainable: int
    total: int
    weights: int  # bytes
    gradients: int
    optimizer: int
    activations: int
    seconds_per_step: float | None = None
    tokens_per_s: float | None = None
    steps_per_epoch: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def memory(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    @property
    def seconds_per_epoch(self) -> float | None:
        if self.seconds_per_step is None or self.steps_per_epoch is None:
            return None
        return self.seconds_per_step * self.steps_per_epoch

    def to_dict(self) -> dict:
        return {"method": self.method, "trainable": self.trainable, "total": self.total,
                "weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "memory": self.memory,
                "seconds_per_step": self.seconds_per_step, "tokens_per_s": self.tokens_per_s,
                "steps_per_epoch": self.steps_per_epoch, "seconds_per_epoch": self.seconds_per_epoch}


@dataclass
class Estimate:
    model: str
    precision: str
    workload: Workload
    methods: list[MethodEstimate]
    available: int | None = None
    processes: int = 1
    distributed: str = "none"

    def render(self) -> str:
        w = self.workload
        timed = any(m.seconds_per_step is not None for m in self.methods)
        source = "from the data" if w.from_data else "batch x max_length, no data file"
        head = ["method", "trainable", "weights", "gradients", "optimizer", "activations", "total"]
        head += ["s/step", "tokens/s", "time/epoch"] if timed else []
        per = (f", per process of {self.processes} ({'fsdp' if self.distributed == 'fsdp' else 'ddp'})"
               if self.processes > 1 else "")
        lines = [f"estimate: {self.model}, precision {self.precision}{per}, biggest micro-batch {w.rows} x "
                 f"{w.row_length} ({w.tokens:,} tokens, {source})",
                 "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for m in self.methods:
            cells = [m.method, f"{m.trainable:,} ({m.trainable / max(m.total, 1):.2%})", _size(m.weights),
                     _size(m.gradients), _size(m.optimizer), _size(m.activations), _size(m.memory)]
            if timed:
                cells += [_num(m.seconds_per_step, ".2f"), _num(m.tokens_per_s, ",.0f"),
                          _duration(m.seconds_per_epoch)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.available is not None:
            lines.append(f"memory available{' to each process' if self.processes > 1 else ''}: "
                         f"{_size(self.available)}")
        if timed and self.processes > 1:
            lines.append(f"(time measured on one process with the whole batch; {self.processes} processes "
                         "share each step's examples)")
        lines.append("(total = what the loop holds at its peak; glibc's allocator may keep freed blocks and "
                     "raise peak RSS above it, up to ~2x the activations; MALLOC_MMAP_THRESHOLD_=131072 avoids that)")
        for m in self.methods:
            lines += [f"  {m.method}: {note}" for note in m.notes]
        return "\n".join(lines)


def workload_for(config, examples=None, *, segmented: bool = True, processes: int = 1) -> Workload:
    """The biggest micro-batch of `config` over `examples` (tokenized), or batch x max_length without
    (also for units that are not single tokenized examples: preference pairs, prompts to sample from).
    With several processes, the biggest share one process gets (rank r takes examples r, r+N, ...)."""
    if examples and not hasattr(examples[0], "labels"):
        examples = None
    train, data = config.train, config.data
    if not examples:
        tokens = -(-(train.batch_tokens or (train.batch_size * data.max_length)) // processes)
        if segmented and data.packing:
            return Workload(1, tokens, tokens, tokens, None, False)
        rows = -(-tokens // data.max_length)
        return Workload(rows, data.max_length, tokens, tokens, None, False)
    lengths = [len(e.input_ids) for e in examples]
    batches = plan_batches(lengths, batch_size=train.batch_size, batch_tokens=train.batch_tokens,
                           seed=train.seed, epoch=0)
    steps = -(-len(batches) // train.grad_accum)
    shares = [batch[rank::processes] for batch in batches for rank in range(processes)]
    biggest = max(shares, key=lambda b: sum(lengths[i] for i in b))
    tokens = sum(lengths[i] for i in biggest)
    targets = sum(sum(1 for t in examples[i].labels[1:] if t != -100) for i in biggest)
    if data.packing and segmented:
        rows, width = 1, tokens
    elif data.packing:
        rows, width = len(pack_rows([lengths[i] for i in biggest], data.max_length)), data.max_length
    else:
        rows, width = len(biggest), max(lengths[i] for i in biggest)
    return Workload(rows, width, tokens, targets, steps, True)


def analytical(config, source, workload: Workload, method_name: str, method_config=None, *,
               processes: int = 1) -> MethodEstimate:
    """Parameters and memory of `method_name` on `source` for `workload`, without reading weights;
    with several processes, what each one holds (see `distribute`)."""
    model, segmented = _meta_model(source, method_name, method_config or config.method)
    precision = resolve_precision(config.train.precision, device_type(config.train))
    prepare_for_precision(model, precision)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    weights = sum(map(stored_bytes, params)) + sum(b.numel() * b.element_size() for b in model.buffers())
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    per_element = OPTIMIZER_STATE_BYTES[config.train.optimizer]
    optimizer = n_trainable * per_element
    activations = activation_bytes(model, workload, precision, segmented, config.objective)
    row = MethodEstimate(method_name, n_trainable, sum(p.numel() for p in params), weights, gradients,
                         optimizer, activations, steps_per_epoch=workload.steps_per_epoch)
    if processes > 1:
        distribute(row, model, config.train.distributed, processes, precision)
    return row


def distribute(row: MethodEstimate, model, strategy: str, processes: int, precision: str) -> None:
    """Make `row` what each of `processes` holds (the activations already are: `workload_for`).

    fsdp: parameters, gradients and optimizer states are split `processes` ways. Each decoder layer's
    weights are gathered whole (in bf16/fp16 under mixed precision) for its forward and backward, two
    layers at a time with prefetching, and the root's (embeddings, final norm, head) for the whole
    step; a layer's gradients are whole until they are reduce-scattered in fp32.
    ddp (also `none` with several processes): every process holds everything. The reducer's flat
    buckets hold the gradients for the whole step; the gradients themselves come as the activations
    go (measured by bench/distributed_memory.py), so they count once.
    """
    if strategy != "fsdp":
        row.notes.append(f"per process of {processes} (ddp): the whole model, gradients and optimizer states")
        return
    layers = _decoder_layers(model)
    inside = {id(p) for layer in layers for p in layer.parameters()}
    half = precision in ("bf16", "fp16")

    def gathered(params) -> int:
        return sum(min(stored_bytes(p), p.numel() * 2) if half and p.is_floating_point() else stored_bytes(p)
                   for p in params)

    def whole_grads(params) -> int:
        return sum(p.numel() * 4 for p in params if p.requires_grad)

    params = list(model.parameters())
    shard = -(-sum(map(stored_bytes, params)) // processes)
    root = [p for p in params if id(p) not in inside]
    widest = max(layers, key=lambda layer: gathered(layer.parameters()), default=None)
    layer = list(widest.parameters()) if widest is not None else []
    in_turn = gathered(root) + 2 * gathered(layer)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    row.weights = shard + in_turn + buffers
    row.gradients = -(-row.gradients // processes) + whole_grads(root) + whole_grads(layer)
    row.optimizer = -(-row.optimizer // processes)
    row.notes.append(f"per process of {processes} (fsdp): weights {_size(shard)} of its shard + {_size(in_turn)} "
                     f"gathered in turn; gradients and optimizer states sharded")


def activation_bytes(model, workload: Workload, precision: str, segmented: bool, objective_config) -> int:
    """Bytes autograd keeps for backward over one micro-batch, plus the transient peak on top of it.

    Per decoder block that needs gradients (fp32 elements; T tokens, H hidden, I MLP width), measured
    with saved-tensor hooks on hone's loop: the two residual inputs of the norms (2 T*H, fp32 even
    under autocast), the inputs of the attention and MLP projections (2 T*H) and of o_proj (T*H),
    q, k, v (k and v repeated to every head) and the attention output (4 T*H), the MLP's gate, SiLU,
    up and product (4 T*I); trainable norm weights add their normalised inputs (2 T*H).
    """
    cfg = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    cfg = getattr(cfg, "text_config", cfg)
    hidden, inter = cfg.hidden_size, getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
    heads = cfg.num_attention_heads
    vocab = cfg.vocab_size
    tokens = workload.rows * workload.row_length  # padding costs memory too
    act = 2 if precision == "bf16" else 4  # autocast matmul outputs
    layers = _decoder_layers(model)
    first = _first_trained_layer(model, layers)
    norms_train = any(p.requires_grad for n, p in model.named_parameters() if "norm" in n)
    per_layer = tokens * (hidden * (2 * 4 + 7 * act + (2 * 4 if norms_train else 0)) + inter * 4 * act)
    if not segmented:  # dense block-diagonal mask: SDPA keeps (heads x L x L) probabilities per row
        per_layer += workload.rows * heads * workload.row_length ** 2 * 4
    trained = len(layers) - first
    # Transients at the peak: the last block's forward temporaries / first backward gradients
    # (~ 3 T*I + 4 T*H), the cross-entropy's gradient w.r.t. the hidden states and one chunk of
    # logits in fp32 (logits, log-probabilities, probabilities).
    chunk = min(getattr(objective_config, "loss_chunk_tokens", 1024), workload.targets)
    transient = tokens * (3 * inter + 4 * hidden) * 4 + workload.targets * hidden * 4 + 3 * chunk * vocab * 4
    head = _output_head(model)
    if head is not None and head.requires_grad:
        transient += head.numel() * 4  # the fused loss's weight gradient, held until backward
    if trained == 0 and not any(p.requires_grad for p in model.parameters()):
        return transient
    return max(trained, 0) * per_layer + transient


def calibrate(config, source, data: PreparedData | None, method_name: str, method_config=None, *,
              objective=None, steps: int = 3) -> dict:
    """Time `steps` real optimizer steps (after one warm-up step) of the real loop pieces: `objective` as
    `prepare` left it over `data`, attached to the model as the loop attaches it. Without data, random
    full-length rows stand in (a fresh SFT objective). A sampling objective's steps sample as in training;
    their mean is its time."""
    import torch

    model, tokenizer, _ = load_model(source)
    batching = Batching.for_run(config.data, tokenizer.pad_token_id, use_segment_attention(model))
    torch.manual_seed(config.train.seed)
    method = method_for(method_name)
    if data is None:
        data = PreparedData(_synthetic_examples(config, tokenizer, steps + 1), [])
        objective = build_objective(config.objective)
    model = objective.attach(method.apply(model, method_config or config.method), data)
    runtime = start_runtime(config.train)
    prepare_for_precision(model, runtime.precision)
    plan = StepPlan(data.train, objective, config, batching)
    optimizer = build_optimizer(model.parameters(), config.train)
    scheduler = build_scheduler(optimizer, config.train, plan.total_steps)
    samples = objective.samples
    objective = runtime.wrap(model, objective)
    objective.accumulate(config.train.grad_accum)
    with runtime.autocast():  # as in the loop (DPO without an adapter scores its reference here)
        objective.begin(model, data, batching, method)
    model.train()
    seconds, tokens = [], []
    for step in range(steps + 1):
        batches = list(plan.micro_batches(step))
        started = time.perf_counter()
        record = optimizer_step(model, objective, batches, optimizer, scheduler, runtime,
                                config.train.max_grad_norm)
        if step:  # the first step pays for allocations and kernel selection
            seconds.append(time.perf_counter() - started)
            tokens.append(record["tokens"])
    typical = statistics.mean(seconds) if samples else statistics.median(seconds)
    return {"seconds_per_step": typical, "tokens_per_s": sum(tokens) / sum(seconds), "samples": samples}


def estimate_run(config, *, methods: list[str] | None = None, calibration_steps: int = 3,
                 data: PreparedData | None = None, objective=None, processes: int = 1, log=None) -> Estimate:
    """The estimate table for `config`: its own method, or each of `methods` with default options;
    memory per process of `processes` (`train.distributed` says how they share the model). The time
    is measured on this one process, with `objective` as `prepare` left it over `data` (without data,
    only an SFT run is timed, on random rows)."""
    source = resolve_model(config.model)
    names = methods or [config.method.type]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise HoneError(f"unknown method {unknown[0]!r}", where="estimate", hint=f"one of {', '.join(METHODS)}")
    examples = data.train if data is not None else None
    _, segmented = _meta_model(source, None, None)
    workload = workload_for(config, examples, segmented=segmented, processes=processes)
    timed = calibration_steps and (data is not None or config.objective.type == "sft")
    rows = []
    for name in names:
        method_config = config.method if name == config.method.type else METHODS[name].Config()
        run, note = _run_for_method(config, method_config)
        estimate = analytical(run, source, workload_for(run, examples, segmented=segmented, processes=processes),
                              name, method_config, processes=processes)
        if note:
            estimate.notes.append(note)
        if calibration_steps and not timed:
            estimate.notes.append(f"not timed: objective {config.objective.type} needs data.train to time its steps "
                                  "(random rows stand in only for sft)")
        if timed:
            if log:
                log(f"estimate: calibrating {name} ({calibration_steps} steps) ...")
            measured = calibrate(run, source, data, name, method_config, objective=objective, steps=calibration_steps)
            estimate.seconds_per_step = measured["seconds_per_step"]
            estimate.tokens_per_s = measured["tokens_per_s"]
            if measured["samples"]:
                estimate.notes.append(f"each step samples from the model as in training ({config.objective.type}): "
                                      "the time is the mean of the calibration steps, with samples of the start "
                                      "model, and changes as training changes how long the samples are")
        rows.append(estimate)
    device = device_type(config.train)
    return Estimate(source.id, resolve_precision(config.train.precision, device), workload, rows,
                    available_memory(device, processes), processes, config.train.distributed)


def _run_for_method(config, method_config):
    """`config` with `method_config`, adjusted where the method requires it (virtual-token methods
    need `data.packing=false`); returns the run config and a note saying what changed."""
    if method_config is config.method:
        return config, None
    data = config.model_dump()
    data["method"] = method_config.model_dump()
    try:
        return RunConfig.model_validate(data), None
    except (ValueError, ConfigError):
        data["data"]["packing"] = False
        return RunConfig.model_validate(data), "estimated with data.packing=false (this method requires it)"


def check_fits(config, source, examples, log=print, *, processes: int = 1, device=None) -> Estimate:
    """Print the analytical estimate of `config`'s run (per process of `processes`) and refuse one
    that cannot fit in the memory of `device` (a GPU's free memory, or this machine's share)."""
    _, segmented = _meta_model(source, None, None)
    workload = workload_for(config, examples, segmented=segmented, processes=processes)
    row = analytical(config, source, workload, config.method.type, processes=processes)
    limit = config.train.memory_limit_gb
    available = int(limit * GIB) if limit else available_memory(device, processes)
    result = Estimate(source.id, resolve_precision(config.train.precision, device_type(config.train)), workload,
                      [row], available, processes, config.train.distributed)
    log(result.render())
    if config.train.memory_check and available is not None and row.memory > available:
        raise ResourceError(
            f"this run needs about {_size(row.memory)} (weights {_size(row.weights)}, gradients "
            f"{_size(row.gradients)}, optimizer {_size(row.optimizer)}, activations {_size(row.activations)}) "
            f"but only {_size(available)} is available{' to each process' if processes > 1 else ''}", where="train",
            hint="lower train.batch_size/train.batch_tokens or data.max_length, pick a lighter method, "
                 "or set train.memory_limit_gb (train.memory_check=false skips this check)")
    return result


def device_type(train) -> str:
    """`cuda` where `train.device` asks for a GPU and one is visible, else `cpu`."""
    import torch

    return "cuda" if train.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"


def available_memory(device=None, processes: int = 1) -> int | None:
    """Bytes one process may use: a CUDA device's free memory, else its share of this machine's
    MemAvailable (/proc/meminfo; None where there is no such file) among the processes it runs."""
    if getattr(device, "type", device) == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    local = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    total = _meminfo_available()
    return total // local if total is not None else None


def reset_peak_rss() -> int:
    """Set this process's peak-RSS mark (VmHWM) to its current RSS, which it returns in bytes (Linux):
    `peak_rss()` after some work, less this, is what the work added at its peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


def peak_rss() -> int:
    return _status_bytes("VmHWM")


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _meta_model(source, method_name: str | None, method_config):
    """The model with the method applied, built on the meta device (no weights read) when the method
    allows it; a method that declares `needs_weights` (e.g. one that quantizes the base),
    or whose `apply` fails on meta tensors, gets the real model instead."""
    import torch
    from transformers import AutoConfig

    method = method_for(method_name) if method_name is not None else None
    if method is None or not method.needs_weights:
        model_config = AutoConfig.from_pretrained(source.path)
        try:
            with torch.device("meta"):
                model = model_class(model_config).from_config(model_config, dtype=torch.float32)
                model.requires_grad_(False)
                segmented = use_segment_attention(model)
                if method is not None:
                    model = method.apply(model, method_config)
            return model, segmented
        except Exception:  # noqa: BLE001 - some methods need real weights (e.g. initialising from text)
            pass
    model, _, _ = load_model(source)
    segmented = use_segment_attention(model)
    return (method.apply(model, method_config) if method is not None else model), segmented


def _decoder_layers(model) -> list:
    import torch

    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, torch.nn.ModuleList):
            return list(layers)
    return []


def _first_trained_layer(model, layers) -> int:
    """The index of the first decoder block whose activations backward needs (0 when anything before
    the blocks trains, e.g. embeddings or a soft prompt; len(layers) when only the head trains)."""
    inside = {id(p) for layer in layers for p in layer.parameters()}
    head = _output_head(model)
    after = {id(p) for n, p in model.named_parameters() if n.endswith("norm.weight") and id(p) not in inside}
    if head is not None:
        after.add(id(head))
    if any(p.requires_grad and id(p) not in inside and id(p) not in after for p in model.parameters()):
        return 0
    for index, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return index
    return len(layers)


def _output_head(model):
    try:
        return model.get_output_embeddings().weight
    except AttributeError:
        return None


def _synthetic_examples(config, tokenizer, steps: int):
    """Random full-length examples for a calibration without a data file."""
    rng = random.Random(config.train.seed)
    length = config.data.max_length
    per_step = config.train.grad_accum * (config.train.batch_size or max(1, config.train.batch_tokens // length))
    vocab = len(tokenizer)
    out = []
    for i in range(per_step * steps):
        ids = [rng.randrange(vocab) for _ in range(length)]
        out.append(TokenizedExample(ids, list(ids), f"synthetic:{i}"))
    return out


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GiB" else f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
