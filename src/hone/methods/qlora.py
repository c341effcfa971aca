"""QLoRA: the frozen base's linear layers quantized to 4-bit NF4, LoRA on top (Dettmers et al. 2023).
Runs on CPU as on CUDA.

Two libraries hold the 4-bit weights. bitsandbytes (`Linear4bit`) has the faster kernels and is the
default. torchao's `NF4Tensor` is what FSDP2 can shard: it splits and all-gathers its packed data and
block scales like an ordinary tensor, so under `train.distributed: fsdp` each process keeps only its
share of the frozen 4-bit base, and the layer gathers it for its forward and backward. `quantizer:
auto` picks torchao under FSDP and bitsandbytes otherwise; the run records the choice.

The base is loaded in fp32 as usual and its linear layers (not the embeddings or the output head)
are then quantized in place, so the model config carries no quantization settings and the same fp32
base id goes into hone.json; loading the artifact quantizes again (deterministic) and attaches PEFT's
LoRA files. Merging folds the update into the *de-quantized* NF4 weights in fp32: the base the
adapter was trained against, not the original fp32 one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from hone.errors import ConfigError
from hone.methods.base import Method
from hone.methods.lora import LoraOptions, check_layers, peft_config
from hone.methods.vision import whole_parts
from hone.models.storage import is_nf4, stored_bytes
from hone.models.vision import module_part

BLOCK = 64  # NF4 block size: weights quantized together under one scale


class Config(LoraOptions):
    type: Literal["qlora"] = "qlora"
    double_quant: bool = True
    """Quantize the per-block scales too (saves ~0.4 bits per weight)."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype the 4-bit weights are de-quantized to for each matmul."""
    quantizer: Literal["auto", "bitsandbytes", "torchao"] = "auto"
    """The library whose NF4 weights hold the base: bitsandbytes (faster kernels), or torchao, whose
    weights FSDP2 can shard. `auto` is torchao under `train.distributed: fsdp`, else bitsandbytes."""

    @model_validator(mode="after")
    def _library_present(self):
        import importlib.util

        library = quantizer(self)
        if importlib.util.find_spec(library) is None:
            raise ValueError(f"qlora with quantizer {self.quantizer} needs {library}: pip install {library}")
        return self


def check_run(run) -> None:
    """Run-level: `auto` becomes a library here, where the run's distribution is known. FSDP2 can shard
    torchao's NF4 tensors; bitsandbytes' packed weights would lose their block scales in the split."""
    fsdp = run.train.distributed == "fsdp"
    if run.method.quantizer == "auto":
        run.method.quantizer = "torchao" if fsdp else "bitsandbytes"
    elif run.method.quantizer == "bitsandbytes" and fsdp:
        raise ValueError("method.quantizer: FSDP2 cannot shard bitsandbytes' 4-bit weights; use method.quantizer="
                         "torchao (what auto picks under fsdp) or train.distributed=ddp")


def quantizer(config: Config) -> str:
    """The library a method config quantizes with (`auto` outside a run: bitsandbytes)."""
    return "torchao" if config.quantizer == "torchao" else "bitsandbytes"


def model_bytes(model) -> int:
    """Parameter bytes, 4-bit weights counted by what they hold (packed data and statistics)."""
    return sum(map(stored_bytes, model.parameters()))


def quantize(model, config: Config) -> dict:
    """Quantize every nn.Linear except the output head to NF4, in place (bitsandbytes' `Linear4bit`, or
    torchao's `NF4Tensor` as the weight of the same nn.Linear); returns the model's parameter bytes
    before and after. Of a vision-language model, only the language model's are quantized."""
    import torch

    before = model_bytes(model)
    head = model.get_output_embeddings()
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and module is not head and module_part(name) == "language_model"]
    library = quantizer(config)
    by_rows = library == "torchao"  # blocks within rows, so that FSDP2 can shard by whole rows
    for name, linear in targets:
        count = linear.in_features if by_rows else linear.weight.numel()
        if count % BLOCK:
            raise ConfigError(f"{name} has {count} weights{' per row' if by_rows else ''}, not a multiple of the "
                              f"NF4 block of {BLOCK}", where="method", hint="use lora on this model")
    (_torchao_layers if by_rows else _bitsandbytes_layers)(model, targets, config)
    return {"before_bytes": before, "after_bytes": model_bytes(model), "quantized_layers": len(targets),
            "quantizer": library}


def _torchao_layers(model, targets, config: Config) -> None:
    import torch
    from torchao.quantization import to_nf4

    compute = getattr(torch, config.compute_dtype)
    for _, linear in targets:
        # double quantization groups a row's block scales (up to 256 of them) under one int8 factor;
        # groups of one keep each scale exact. Groups within rows keep every row-wise shard whole.
        blocks = linear.in_features // BLOCK
        group = max(d for d in range(1, min(blocks, 256) + 1) if blocks % d == 0) if config.double_quant else 1
        weight = to_nf4(linear.weight.data.to(compute).contiguous(), BLOCK, group)
        linear.weight = torch.nn.Parameter(weight, requires_grad=False)


def _bitsandbytes_layers(model, targets, config: Config) -> None:
    import bitsandbytes as bnb
    import torch

    compute = getattr(torch, config.compute_dtype)
    for name, linear in targets:
        quantized = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                      compute_dtype=compute, compress_statistics=config.double_quant,
                                      quant_type="nf4", device="cpu")
        quantized.weight = bnb.nn.Params4bit(linear.weight.data.float().cpu(), requires_grad=False,
                                             quant_type="nf4", compress_statistics=config.double_quant,
                                             blocksize=BLOCK)
        if linear.bias is not None:
            quantized.bias = torch.nn.Parameter(linear.bias.data.clone(), requires_grad=False)
        quantized = quantized.to(linear.weight.device)  # quantizes
        # On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for a bf16 kernel at the first
        # no-grad eval forward: inference would then compute in bf16 although training (and the merge)
        # used `compute_dtype`. Keep one numeric path unless bf16 compute was asked for.
        quantized.support_avx512bf16_for_cpu &= config.compute_dtype == "bfloat16"
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, quantized)


def apply(model, config: Config):
    from peft import get_peft_model

    check_layers(model, config)
    report = quantize(model, config)
    peft_model = get_peft_model(model, peft_config(model, config))
    peft_model.hone_quantization = report
    return peft_model


def describe(model) -> str:
    report = model.hone_quantization
    return (f"qlora: base weights {report['before_bytes'] / 2**20:.1f} MiB -> {report['after_bytes'] / 2**20:.1f} "
            f"MiB after NF4 quantization ({report['quantizer']}) of {report['quantized_layers']} linear layers")


def save(model, directory) -> None:
    model.save_pretrained(directory)


def load(base, directory):
    import json
    from pathlib import Path

    from peft import PeftModel

    manifest = json.loads((Path(directory) / "hone.json").read_text())
    report = quantize(base, Config.model_validate(manifest["method"]))
    model = PeftModel.from_pretrained(base, directory).eval()
    model.hone_quantization = report
    return model


def merge(model):
    """A plain fp32 model: each NF4 weight de-quantized to fp32, plus its LoRA update; parts trained whole
    as trained."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    root = model.get_base_model()
    for name, module in [(n, m) for n, m in root.named_modules() if isinstance(m, ModulesToSaveWrapper)]:
        parent, _, child = name.rpartition(".")  # a part trained whole: its trained copy replaces the base's
        setattr(root.get_submodule(parent) if parent else root, child,
                module.modules_to_save[model.active_adapter])
    wrappers = [(n, m) for n, m in root.named_modules() if isinstance(m, LoraLayer)]
    plain = [(n, m) for n, m in root.named_modules() if _is_4bit(m) and not isinstance(m, LoraLayer)
             and not any(n.startswith(w + ".") for w, _ in wrappers)]
    for name, module in wrappers + plain:
        base = module.get_base_layer() if isinstance(module, LoraLayer) else module
        weight = _dequantized(base.weight)
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                weight = weight + module.get_delta_weight(adapter).float()
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None)
        linear.weight = torch.nn.Parameter(weight, requires_grad=False)
        if base.bias is not None:
            linear.bias = torch.nn.Parameter(base.bias.data.float().clone(), requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, child, linear)
    return root


def _is_4bit(module) -> bool:
    weight = getattr(module, "weight", None)
    return weight is not None and (hasattr(weight, "quant_state") or is_nf4(weight))


def _dequantized(weight):
    """A 4-bit weight (bitsandbytes' or torchao's) as a plain fp32 tensor."""
    if is_nf4(weight):
        return weight.get_original_weight().float()
    from bitsandbytes.functional import dequantize_4bit

    return dequantize_4bit(weight.data, weight.quant_state).float()


def side_by_side(config: Config) -> bool:
    """Its files are PEFT LoRA weights: the server applies them to its own (unquantized) base; unless a
    part trained whole, which replaces the base's own."""
    return not whole_parts(config)


METHOD = Method("qlora", Config, apply, save, load, adapter=True, merge=merge,
                merge_precision="fp32, into the NF4-de-quantized base weights", side_by_side=side_by_side,
                needs_weights=True,  # hone estimate: quantization needs the real weights, not meta tensors
                check_run=check_run, describe=describe)
