"""Tiny randomly initialised models and tokenizers, built in-process for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from hone.errors import ModelError

# The same template as the default model (SmolLM2-Instruct), so tests exercise the real masking path.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Order a large pizza with mushrooms, olives and extra cheese for delivery.",
    '{"size": "large", "toppings": ["mushrooms", "olives"], "quantity": 2, "delivery": true}',
    "You are a helpful assistant. Answer the question in one word.",
    "What is the capital of France? Paris. 1 2 3 4 5 6 7 8 9 0",
]


def tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer with ChatML special tokens and the default model's chat template."""
    fast = bpe_tokenizer(_CORPUS * 4, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], vocab_size,
                         bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>",
                         pad_token="<|im_end|>")
    fast.chat_template = CHATML_TEMPLATE
    return fast


def bpe_tokenizer(corpus: list[str], specials: list[str], vocab_size: int, **special_tokens):
    """A fast byte-level BPE tokenizer trained on `corpus`, holding `specials` (bos_token=... etc. name them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_tokens)


def chat_tokenizer(corpus: list[str], specials: tuple[str, ...], template: str, vocab_size: int, **extra):
    """A byte-level BPE tokenizer trained on `corpus`, whose first three `specials` are its bos, eos and pad
    tokens, rendering the chat `template` (`extra`: more tokenizer arguments)."""
    bos, eos, pad = specials[:3]
    fast = bpe_tokenizer(corpus * 4, list(dict.fromkeys(specials)), vocab_size, bos_token=bos, eos_token=eos,
                         pad_token=pad, **extra)
    fast.chat_template = template
    return fast


def family_named(families: dict, name: str, kind: str):
    """The entry `name` of a table of model families (`kind`: "model family", "vision family"); an
    unknown name is a ModelError listing the known ones."""
    try:
        return families[name]
    except KeyError:
        raise ModelError(f"unknown {kind} {name!r}", where="family", hint=f"one of {', '.join(families)}") from None


def tiny_model(tokenizer, *, layers: int = 2, hidden: int = 64, seed: int = 0):
    """A seeded random Llama with the tokenizer's vocabulary (2 layers, hidden 64 by default)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).float().eval()


def save_tiny_model(path: str | Path, *, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Write a tiny model directory (transformers format) that `hone` loads like any other."""
    path = Path(path)
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer, layers=layers, hidden=hidden, seed=seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
