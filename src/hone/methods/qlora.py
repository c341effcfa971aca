"""QLoRA: the frozen base's linear layers quantized to 4-bit NF4 (bitsandbytes), LoRA on top
(Dettmers et al. 2023). Runs on CPU (bitsandbytes' CPU backend) as on CUDA.

The base is loaded in fp32 as usual and its linear layers (not the embeddings or the output head)
are then quantized in place, so the model config carries no quantization settings and the same fp32
base id goes into hone.json; loading the artifact quantizes again (deterministic) and attaches PEFT's
LoRA files. Merging folds the update into the *de-quantized* NF4 weights in fp32: the base the
adapter was trained against, not the original fp32 one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from hone.methods.lora import LoraOptions, check_layers, peft_config

BLOCK = 64  # bitsandbytes' NF4 block size: each quantized weight's element count must be a multiple of it


class Config(LoraOptions):
    type: Literal["qlora"] = "qlora"
    double_quant: bool = True
    """Quantize the per-block scales too (saves ~0.4 bits per weight)."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype the 4-bit weights are de-quantized to for each matmul."""

    @field_validator("double_quant")
    @classmethod
    def _bitsandbytes_present(cls, value):
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("qlora needs bitsandbytes: pip install bitsandbytes")
        return value


def model_bytes(model) -> int:
    """Parameter bytes, plus the 4-bit layers' quantization statistics (block scales, codebooks)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        while state is not None:
            total += sum(t.numel() * t.element_size() for t in (state.absmax, state.code) if t is not None)
            state = state.state2 if state.nested else None
    return total


def quantize(model, config: Config) -> dict:
    """Replace every nn.Linear except the output head with an NF4 `bnb.nn.Linear4bit`, in place;
    returns the model's parameter bytes before and after."""
    import bitsandbytes as bnb
    import torch

    from hone.errors import ConfigError

    before = model_bytes(model)
    head = model.get_output_embeddings()
    compute = getattr(torch, config.compute_dtype)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and module is not head]
    for name, linear in targets:
        if linear.weight.numel() % BLOCK:
            raise ConfigError(f"{name} has {linear.weight.numel()} weights, not a multiple of NF4's block of "
                              f"{BLOCK}", where="method", hint="use lora on this model")
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
    return {"before_bytes": before, "after_bytes": model_bytes(model), "quantized_layers": len(targets)}


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
            f"MiB after NF4 quantization of {report['quantized_layers']} linear layers")


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
    """A plain fp32 model: each NF4 weight de-quantized to fp32, plus its LoRA update."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import dequantize_4bit
    from peft.tuners.lora import LoraLayer

    root = model.get_base_model()
    wrappers = [(n, m) for n, m in root.named_modules() if isinstance(m, LoraLayer)]
    plain = [(n, m) for n, m in root.named_modules() if isinstance(m, bnb.nn.Linear4bit)
             and not any(n.startswith(w + ".") for w, _ in wrappers)]
    for name, module in wrappers + plain:
        base = module.get_base_layer() if isinstance(module, LoraLayer) else module
        weight = dequantize_4bit(base.weight.data, base.weight.quant_state).float()
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


MERGE_PRECISION = "fp32, into the NF4-de-quantized base weights"
needs_weights = True  # hone estimate: quantization needs the real weights, not meta tensors
