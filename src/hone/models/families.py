"""The model families hone is tested on: their architecture, chat template and what works for each.

Each family builds a tiny randomly initialised model from its own transformers config class, with a
byte-level BPE tokenizer that holds the family's special tokens and renders its chat template, so
the test suite (tests/families/) runs the same checks on every family in seconds: the loss mask,
packing, LoRA and full training, save/load, merge, GGUF export and serving parity. The family
table in docs/families.md is generated from this registry (`hone models --markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hone.data.templates import CHAT_TEMPLATES
from hone.errors import ModelError
from hone.models.tiny import chat_tokenizer, family_named
from hone.models.vision_families import vision_family_rows

GGUF_ARCHITECTURES = ("llama", "qwen2")  # model types hone's GGUF export writes (export/gguf.py)


@dataclass(frozen=True)
class Family:
    name: str
    config_class: str  # the transformers config class of the tiny model
    template: str  # a name in data.templates.CHAT_TEMPLATES
    specials: tuple[str, ...]  # special tokens: bos, eos, pad first, then the template's own
    end_of_turn: str  # the token that ends an assistant reply (generation stops there)
    examples: str  # real checkpoints of this family
    reasoning: bool = False  # the template renders reasoning (reasoning_content / thinking)
    system: str = "yes"  # how the template handles a system prompt
    features: tuple[str, ...] = ()  # architecture features the tiny model switches on
    config: dict = field(default_factory=dict)  # extra config arguments for the tiny model
    lora_targets: str = "attention and MLP projections"
    served_side_by_side: bool = True  # a LoRA on it is served beside others (else: merge, then serve)

    @property
    def model_type(self) -> str:
        import transformers

        return getattr(transformers, self.config_class).model_type

    @property
    def gguf(self) -> bool:
        return self.model_type in GGUF_ARCHITECTURES


WINDOW = 8  # a sliding window shorter than the test conversations, so it matters
FAMILIES = {f.name: f for f in (
    Family("llama3", "LlamaConfig", "llama3",
           ("<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>", "Llama 3 / 3.1 / 3.2 Instruct",
           features=("tied embeddings",), config={"tie_word_embeddings": True}),
    Family("qwen2.5", "Qwen2Config", "qwen2.5", ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>"),
           "<|im_end|>", "Qwen2.5 Instruct", system="yes; a default system prompt when none is given",
           config={"use_sliding_window": False}),
    Family("qwen3", "Qwen3Config", "qwen3",
           ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<think>", "</think>"),
           "<|im_end|>", "Qwen3 (dense)", reasoning=True),
    Family("qwen3-moe", "Qwen3MoeConfig", "qwen3",
           ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<think>", "</think>"),
           "<|im_end|>", "Qwen3-30B-A3B, Qwen3-235B-A22B", reasoning=True, features=("mixture of experts",),
           config={"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1},
           lora_targets="attention projections, the router and the fused expert weights",
           served_side_by_side=False),
    Family("gemma2", "Gemma2Config", "gemma2", ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"),
           "<end_of_turn>", "Gemma 2 it", system="refused by the template (no system role)",
           features=("sliding window", "alternating local/global layers", "attention soft-capping",
                     "final logit soft-capping", "tied embeddings"),
           config={"sliding_window": WINDOW, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
                   "query_pre_attn_scalar": 16}),
    Family("gemma3", "Gemma3TextConfig", "gemma3", ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"),
           "<end_of_turn>", "Gemma 3 it (text)", system="folded into the first user turn",
           features=("sliding window", "alternating local/global layers", "tied embeddings"),
           config={"sliding_window": WINDOW, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16,
                   "layer_types": ["sliding_attention", "full_attention"]}),
    Family("mistral", "MistralConfig", "mistral", ("<s>", "</s>", "<unk>", "[INST]", "[/INST]"), "</s>",
           "Mistral 7B Instruct v0.3", system="yes; placed before the last user message",
           features=("sliding window",), config={"sliding_window": WINDOW}),
    Family("phi3", "Phi3Config", "phi3",
           ("<s>", "<|endoftext|>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
           "<|end|>", "Phi-3 / Phi-3.5 mini instruct",
           lora_targets="attention and MLP projections (fused qkv_proj and gate_up_proj)"),
    Family("smollm3", "SmolLM3Config", "smollm3", ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<think>", "</think>"),
           "<|im_end|>", "SmolLM3-3B", system="yes; inside a generated metadata header",
           features=("tied embeddings",), config={"no_rope_layer_interval": 2}),
    Family("gpt-oss", "GptOssConfig", "gpt-oss",
           ("<|startoftext|>", "<|return|>", "<|endoftext|>", "<|start|>", "<|message|>", "<|channel|>", "<|end|>"),
           "<|return|>", "gpt-oss-20b, gpt-oss-120b", reasoning=True, system="yes; as developer instructions",
           features=("mixture of experts", "attention sinks", "sliding window", "alternating local/global layers"),
           config={"num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": WINDOW,
                   "layer_types": ["sliding_attention", "full_attention"]},
           lora_targets="attention projections (experts are fused 3-D weights, not linear layers)"),
)}

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Order a large pizza with mushrooms, olives and extra cheese for delivery.",
    "You are a helpful assistant. Answer the question in one word.",
    "What is the capital of France? Paris. 1 2 3 4 5 6 7 8 9 0",
    "system user assistant model developer analysis final Instructions Reasoning medium",
]


def family(name: str) -> Family:
    return family_named(FAMILIES, name, "model family")


def tiny_family_tokenizer(fam: Family, vocab_size: int = 400):
    """A byte-level BPE tokenizer with the family's special tokens and chat template."""
    return chat_tokenizer(_CORPUS, fam.specials, CHAT_TEMPLATES[fam.template], vocab_size)


def tiny_family_model(fam: Family, tokenizer, *, layers: int = 2, hidden: int = 32, seed: int = 0):
    """A seeded random model of the family's architecture (2 layers, hidden 32) in fp32, eval mode."""
    import torch
    import transformers

    config_class = getattr(transformers, fam.config_class)
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(fam.end_of_turn)]
    arguments = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                     num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
                     max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=sorted(set(eos)), pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    arguments.update(fam.config)
    config = config_class(**arguments)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = sorted(set(eos))
    return model.eval()


def save_tiny_family(name: str, path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny model of family `name` (transformers format) that hone loads like any other."""
    fam = family(name)
    path = Path(path)
    tokenizer = tiny_family_tokenizer(fam)
    tiny_family_model(fam, tokenizer, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def check_trainable(model_config, objective: str) -> None:
    """Refuse, before training, an architecture feature that hone's losses would get silently wrong."""
    if getattr(model_config, "final_logit_softcapping", None) and objective != "sft":
        raise ModelError(
            f"{model_config.model_type} soft-caps its output logits, which the {objective} objective's fused "
            "log-probabilities do not apply", where="model",
            hint="train this model with objective=sft, or pick a model without final_logit_softcapping")


HOW_TO_POINT = """Point hone at a model of any of these families with `model=`:
- a transformers model directory (config.json + safetensors), e.g. `model=/models/Qwen3-4B`;
- a `.gguf` file (converted once to a cached transformers directory), e.g. `model=gemma-3-1b-it.gguf`;
- a hub id already in the local Hugging Face cache, e.g. `model=meta-llama/Llama-3.2-1B-Instruct`.
A base model without a chat template trains chat data with `data.chat_template=FAMILY` (the template
names below) or a Jinja file."""


def family_rows() -> list[dict]:
    """One row per family: what hone does with it (the tests in tests/families/ check each claim)."""
    return [{
        "family": f.name, "examples": f.examples, "architecture": f.model_type, "template": f.template,
        "system prompt": f.system, "reasoning": "trained or dropped (data.reasoning)" if f.reasoning else "no",
        "features": ", ".join(f.features) or "-", "LoRA targets": f.lora_targets,
        "GGUF export": "yes" if f.gguf else "refused (architecture not written yet)",
        "served beside other adapters": "yes" if f.served_side_by_side else "no: merge, then serve",
    } for f in FAMILIES.values()]


def vision_family_lines() -> list[str]:
    """The vision-language families' rows of docs/families.md (tests/vision/ checks each)."""
    rows = vision_family_rows()
    columns = list(rows[0])
    return ["", "## Vision-language families", "",
            "These load through `AutoModelForImageTextToText` and the model's own processor; tests/vision/ "
            "trains a tiny random model of each with SFT and DPO on generated pictures: the loss falls on "
            "assistant text only, never on an image token; each example with images has a row of its own; "
            "LoRA (optionally on the projector and vision tower), full and QLoRA artifacts reload and "
            "generate with images. See docs/vision.md.", "",
            "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |" for row in rows)]


def family_table() -> str:
    """docs/families.md: the family table, generated from this registry (`hone models --markdown`)."""
    rows = family_rows()
    columns = list(rows[0])
    lines = ["# Model families", "",
             "<!-- generated by `hone models --markdown`; tests/families/test_docs.py keeps it current -->", "",
             "Every family below runs through the same checks in tests/families/: its chat template renders "
             "the published turn format exactly; the loss mask trains each reply and its end-of-turn token and "
             "no scaffolding; a packed row gives the loss of its examples one by one (sliding windows, "
             "soft-capping and attention sinks included); LoRA and full training lower the loss; save and "
             "load give equal logits; a merge equals base + adapter; GGUF export reads back or is refused "
             "naming the architecture; `hone verify` finds served, generated and merged answers equal.", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    lines += ["", "Templates that re-render earlier replies once a later one follows (qwen3 drops their "
              "`<think>` blocks, gpt-oss ends only the last with `<|return|>`) train the last reply of each "
              "conversation; the earlier ones stay context, and the data report says how many. The smollm3 and gpt-oss templates leave out "
              "the current date their published versions print, so a prompt renders the same on every day.",
              *vision_family_lines(), "", HOW_TO_POINT, ""]
    return "\n".join(lines)
