"""The vision-language families hone is tested on, and their tiny random models.

Each family builds a tiny randomly initialised model from its own transformers config classes (a
one-layer vision tower on 32-pixel images, a projector, a two-layer language model), with a byte-level
BPE tokenizer holding the family's special tokens, its image processor (the Pillow one) and a
processor whose chat template takes content parts, so every vision test (tests/vision/) loads it like
a real checkpoint in a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hone.models.tiny import chat_tokenizer, family_named
from hone.models.vision import image_only

IMAGE_SIZE = 32  # pixels a side: 16 patches of 8 pixels, a handful of image tokens per image
PATCH = 8
HIDDEN = 32


def parts_loop(image: str, text: str = "{{ part['text'] }}") -> str:
    """Jinja rendering a message's content: a string as-is, or its parts in order (images as `image`)."""
    return ("{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for part in message['content'] %}{% if part['type'] == 'image' %}" + image +
            "{% elif part['type'] == 'text' %}" + text + "{% endif %}{% endfor %}{% endif %}")


SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is not string and message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    + parts_loop("<image>") + "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
QWEN_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n" + parts_loop("<|vision_start|><|image_pad|><|vision_end|>")
    + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
GEMMA3_VL_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] %}"
    "{% set first = (first if first is string else first[0]['text']) + '\n\n' %}{% set rest = messages[1:] %}"
    "{% else %}{% set first = '' %}{% set rest = messages %}{% endif %}"
    "{% for message in rest %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{% if loop.first %}{{ first }}{% endif %}" + parts_loop("<start_of_image>")
    + "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] if message['content'] "
    "is string else message['content'][0]['text'] }}\n{% elif message['role'] == 'user' %}USER: "
    + parts_loop("<image>\n") + "{{ '\\n' }}{% else %}ASSISTANT: " + parts_loop("") + "</s>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


@dataclass(frozen=True)
class VisionFamily:
    name: str
    architecture: str  # the transformers model type
    examples: str  # real checkpoints of this family
    specials: tuple[str, ...]  # bos, eos, pad, then the template's and the image tokens
    end_of_turn: str
    template: str
    image_token: str  # the token the processor repeats for each image feature
    tokens_per_image: int  # in the tiny model (32-pixel images)
    extra_tokens: dict  # name -> token, attributes the family's processor reads from its tokenizer
    projector_lora: str = "yes"  # whether method.train_projector can put LoRA on the projector


VISION_FAMILIES = {f.name: f for f in (
    VisionFamily("smolvlm", "idefics3", "SmolVLM / SmolVLM2, Idefics3",
                 ("<|im_start|>", "<end_of_utterance>", "<|endoftext|>", "<fake_token_around_image>", "<image>",
                  "<global-img>"), "<end_of_utterance>", SMOLVLM_TEMPLATE, "<image>", 4, {}),
    VisionFamily("qwen2.5-vl", "qwen2_5_vl", "Qwen2.5-VL Instruct",
                 ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"), "<|im_end|>", QWEN_VL_TEMPLATE,
                 "<|image_pad|>", 4, {}),
    VisionFamily("gemma3-vl", "gemma3", "Gemma 3 it (4B and up)",
                 ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                  "<image_soft_token>"), "<end_of_turn>", GEMMA3_VL_TEMPLATE, "<image_soft_token>", 4,
                 {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
                 projector_lora="no: a plain weight matrix, trained by method=full"),
    VisionFamily("llava", "llava", "LLaVA 1.5",
                 ("<s>", "</s>", "<unk>", "<image>"), "</s>", LLAVA_TEMPLATE, "<image>", 16,
                 {"image_token": "<image>"}),
)}

_CORPUS = [
    "How many shapes are in the picture? three circles, two squares, one triangle.",
    "What colour is the square? red green blue yellow. Read the digit: 0 1 2 3 4 5 6 7 8 9",
    "You are a helpful assistant. USER: ASSISTANT: User: Assistant: system user model",
]


def vision_family(name: str) -> VisionFamily:
    return family_named(VISION_FAMILIES, name, "vision family")


def tiny_vlm_tokenizer(fam: VisionFamily, vocab_size: int = 300):
    return chat_tokenizer(_CORPUS, fam.specials, fam.template, vocab_size,
                          extra_special_tokens=fam.extra_tokens or None)


def text_config(tokenizer, eos: list[int], **extra) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=HIDDEN * 2, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=HIDDEN // 4, max_position_embeddings=1024,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=False, **extra)


def vision_tower_config(**extra) -> dict:
    return dict(hidden_size=HIDDEN, intermediate_size=HIDDEN * 2, num_hidden_layers=1, num_attention_heads=2,
                image_size=IMAGE_SIZE, patch_size=PATCH, **extra)


def tiny_vlm_parts(fam: VisionFamily, tokenizer):
    """(model config, processor) of the family's tiny model."""
    import transformers as tf

    eos = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(fam.end_of_turn)})
    image_id = tokenizer.convert_tokens_to_ids(fam.image_token)
    if fam.architecture == "idefics3":
        config = tf.Idefics3Config(vision_config=vision_tower_config(), text_config=text_config(tokenizer, eos,
                                   model_type="llama"), scale_factor=2, image_token_id=image_id,
                                   pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
        images = tf.Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": IMAGE_SIZE},
                                              max_image_size={"longest_edge": IMAGE_SIZE})
        processor = tf.Idefics3Processor(images, tokenizer, image_seq_len=fam.tokens_per_image,
                                         chat_template=fam.template)
    elif fam.architecture == "qwen2_5_vl":
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}
        config = tf.Qwen2_5_VLConfig(
            text_config=text_config(tokenizer, eos, rope_parameters=rope),
            vision_config=dict(depth=1, hidden_size=HIDDEN, intermediate_size=HIDDEN * 2, num_heads=2,
                               out_hidden_size=HIDDEN, patch_size=PATCH, spatial_merge_size=2, temporal_patch_size=2,
                               window_size=2 * PATCH * 2, fullatt_block_indexes=[0]),
            image_token_id=image_id, video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
            vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
            vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"), tie_word_embeddings=False)
        pixels = IMAGE_SIZE * IMAGE_SIZE
        images = tf.Qwen2VLImageProcessorPil(patch_size=PATCH, merge_size=2, temporal_patch_size=2,
                                             min_pixels=pixels, max_pixels=pixels,
                                             size={"shortest_edge": pixels, "longest_edge": pixels})
        processor = image_only(tf.Qwen2_5_VLProcessor)(images, tokenizer, chat_template=fam.template)
    elif fam.architecture == "gemma3":
        config = tf.Gemma3Config(
            text_config=text_config(tokenizer, eos, sliding_window=8, query_pre_attn_scalar=16,
                                    layer_types=["sliding_attention", "full_attention"]),
            vision_config=vision_tower_config(), mm_tokens_per_image=fam.tokens_per_image,
            boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
            eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"), image_token_index=image_id,
            tie_word_embeddings=False)
        images = tf.Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        processor = tf.Gemma3Processor(images, tokenizer, image_seq_length=fam.tokens_per_image,
                                       chat_template=fam.template)
    else:  # llava
        config = tf.LlavaConfig(vision_config=tf.CLIPVisionConfig(**vision_tower_config(projection_dim=HIDDEN)),
                                text_config=text_config(tokenizer, eos, model_type="llama"),
                                image_token_index=image_id, vision_feature_select_strategy="default",
                                vision_feature_layer=-1, image_seq_length=fam.tokens_per_image,
                                tie_word_embeddings=False)
        images = tf.CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                          crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        processor = tf.LlavaProcessor(images, tokenizer, patch_size=PATCH, vision_feature_select_strategy="default",
                                      num_additional_image_tokens=1, chat_template=fam.template)
    return config, processor


def save_tiny_vlm(name: str, path: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny vision-language model of family `name` (config, weights, processor, tokenizer, chat
    template) that hone loads like any other model directory."""
    import torch
    import transformers

    fam = vision_family(name)
    path = Path(path)
    tokenizer = tiny_vlm_tokenizer(fam)
    config, processor = tiny_vlm_parts(fam, tokenizer)
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    eos = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(fam.end_of_turn)})
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    processor.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def vision_family_rows() -> list[dict]:
    """One row per vision family for docs/families.md."""
    return [{"family": f.name, "examples": f.examples, "architecture": f.architecture,
             "image token": f"`{f.image_token}`, once per image feature", "projector LoRA": f.projector_lora}
            for f in VISION_FAMILIES.values()]
