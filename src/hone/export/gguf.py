"""GGUF export for llama.cpp users: a llama or qwen2 transformers model directory -> one .gguf file.

Written with the `gguf` package's `GGUFWriter` (no llama.cpp build needed). Tensor names come from
gguf's own name map of the architecture; for llama, q_proj and k_proj are permuted the way
llama.cpp's converter does it (llama.cpp applies rotary embeddings to interleaved pairs there,
transformers to the two halves). The
tokenizer goes in as `tokenizer.ggml.*` metadata: the byte-level BPE tokens, their types (special
tokens CONTROL, other added tokens USER_DEFINED), the merges, the special token ids and the chat
template, so the file alone reproduces the tokenizer and the prompts hone trained on.

`dtype`: `f32`, `f16` (matrices in f16, norms in f32 as llama.cpp expects) or `q8_0` (matrices
whose rows are a multiple of 32 in 8-bit blocks, the rest in f16/f32).
"""

from __future__ import annotations

import json
from pathlib import Path

from hone.errors import ModelError
from hone.models.families import GGUF_ARCHITECTURES as ARCHITECTURES

DTYPES = ("f32", "f16", "q8_0")
# llama.cpp's names for the split regex of a byte-level BPE pre-tokenizer.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def write_gguf(model_dir: str | Path, out_path: str | Path, *, dtype: str = "f16") -> Path:
    """Write the model in `model_dir` (a transformers directory: a merged export or a base model)
    to `out_path` as a GGUF file of its architecture; returns the path written (atomically)."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelError(f"unknown GGUF dtype {dtype!r}", where="--dtype", hint=f"one of {', '.join(DTYPES)}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = _read_config(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    arch = config["model_type"]
    writer = gguf.GGUFWriter(str(tmp), arch)
    _write_hparams(writer, model.config, model_dir.name, dtype)
    _write_tokenizer(writer, tokenizer, model_dir, model.config.vocab_size)
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), config["num_hidden_layers"])
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp (and transformers reading GGUF) reuse token_embd for a missing output
        if name.endswith("rotary_emb.inv_freq"):
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ModelError(f"no GGUF name for tensor {name}", where=str(model_dir),
                             hint=f"only {', '.join(ARCHITECTURES)} models export to GGUF")
        data = tensor.detach().float().numpy()
        if arch == "llama" and name.endswith("q_proj.weight"):
            data = _permute(data, heads, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            data = _permute(data, heads, kv_heads)
        _add_tensor(writer, target, data, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out_path)
    return out_path


def _read_config(model_dir: Path) -> dict:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read config.json: {exc}", where=str(model_dir),
                         hint="point at a transformers model directory (e.g. a merged export)") from None
    if config.get("model_type") not in ARCHITECTURES:
        raise ModelError(f"model type {config.get('model_type')!r} cannot be exported to GGUF yet",
                         where=str(model_dir), hint=f"supported: {', '.join(ARCHITECTURES)}")
    if config.get("use_sliding_window"):
        raise ModelError("a sliding attention window cannot be written to a GGUF file yet", where=str(model_dir),
                         hint="export a model without use_sliding_window")
    return config


def _permute(weights, n_head: int, n_head_kv: int):
    """llama.cpp's q/k row order: per head, the two rotary halves interleaved."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    shape = weights.shape
    return (weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape))


def _add_tensor(writer, name: str, data, dtype: str) -> None:
    import gguf
    import numpy as np

    if data.ndim < 2 or dtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif dtype == "q8_0" and data.shape[-1] % 32 == 0:
        quant = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), quant), raw_dtype=quant)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def _write_hparams(writer, config, name: str, dtype: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta") if isinstance(rope, dict) else None
    theta = theta or getattr(config, "rope_theta", None) or 10000.0
    if isinstance(rope, dict) and rope.get("rope_type", "default") not in ("default", None):
        raise ModelError(f"rope type {rope['rope_type']!r} is not exported to GGUF yet", where="config.json")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer.add_file_type(file_type)


def _write_tokenizer(writer, tokenizer, model_dir: Path, vocab_size: int) -> None:
    """tokenizer.ggml.*: gpt2-style byte-level BPE tokens, types, merges, special ids, chat template."""
    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state.get("model", {}).get("type") != "BPE":
        raise ModelError("only byte-level BPE tokenizers export to GGUF yet", where=str(model_dir))
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {t["id"]: t for t in state.get("added_tokens", [])}
    tokens, types = [], []
    for index in range(vocab_size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL if index not in added else
                         gguf.TokenType.CONTROL if added[index].get("special") else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(state))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for attr, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                      ("unk_token_id", writer.add_unk_token_id), ("pad_token_id", writer.add_pad_token_id)):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            add(value)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _pre_tokenizer_name(state: dict) -> str:
    """llama.cpp's `tokenizer.ggml.pre` for this tokenizer's split rule ('gpt-2' for plain byte-level)."""
    text = json.dumps(state.get("pre_tokenizer"))
    if "\\\\p{N}{1,3}" in text or "p{N}{1,3}" in text:
        return "llama-bpe"
    return "gpt-2"
