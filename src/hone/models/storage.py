"""What a parameter stores: the bytes it holds here, 4-bit weights and FSDP shards included."""

from __future__ import annotations


def is_nf4(tensor) -> bool:
    """A torchao NF4 weight (told by its de-quantizing accessor, without importing torchao)."""
    return hasattr(tensor, "get_original_weight")


def stored_bytes(tensor) -> int:
    """The bytes a parameter holds here: under FSDP2 this process's shard; for a 4-bit weight its packed
    data plus its quantization statistics (bitsandbytes' block scales and codebooks, or the inner
    tensors of torchao's NF4Tensor, which reports its de-quantized size)."""
    tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    if is_nf4(tensor):
        return sum(stored_bytes(getattr(tensor, name)) for name in tensor.__tensor_flatten__()[0])
    total = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)
    while state is not None:
        total += sum(t.numel() * t.element_size() for t in (state.absmax, state.code) if t is not None)
        state = state.state2 if state.nested else None
    return total
