"""What is vision-specific about a model: whether it has a vision tower, its processor, and which of
its modules are the language model, the projector and the vision tower.

A vision-language model is a config with a `vision_config`; it loads through
`AutoModelForImageTextToText` and its processor through `AutoProcessor`. Where the installed
transformers cannot build a processor's video half (it needs torchvision), hone builds the same
processor for images only: hone trains and serves images, never videos.
"""

from __future__ import annotations

import re
from pathlib import Path

from hone.data.vision import processor_for
from hone.errors import ModelError

# Module-name patterns of the three parts of the vision-language models transformers ships (the names
# are `model.language_model...`, `model.multi_modal_projector...`, `model.visual...` and the like).
VISION_TOWER = re.compile(r"(^|\.)(vision_tower|vision_model|visual(?!\.merger))(\.|$)")
PROJECTOR = re.compile(r"(^|\.)(multi_modal_projector|connector|visual\.merger|mm_projector)(\.|$)")


def is_vision(config) -> bool:
    """Whether a model config describes a vision-language model (it has a vision tower)."""
    return getattr(config, "vision_config", None) is not None


def model_class(config):
    """The transformers auto class that loads a model of `config`: image-text-to-text or causal LM."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    return AutoModelForImageTextToText if is_vision(config) else AutoModelForCausalLM


def module_part(name: str) -> str:
    """Which part of a vision-language model the module or parameter `name` belongs to: "vision_tower",
    "projector" or "language_model" (everything else, the LM head included)."""
    if PROJECTOR.search(name):
        return "projector"
    if VISION_TOWER.search(name):
        return "vision_tower"
    return "language_model"


def multimodal_body(model):
    """The part of a vision-language model that turns ids and pixels into final hidden states (its
    vision tower, projector and language model, without the output head); through a PEFT wrapper too."""
    from peft import PeftModel

    outer = model.get_base_model() if isinstance(model, PeftModel) else model
    return outer.model


def image_only(processor_class):
    """`processor_class` built from an image processor and a tokenizer alone (no video processor)."""
    if "video_processor" not in processor_class.get_attributes():
        return processor_class

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_class.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    # Same class name, so the saved processor_config.json names the real class.
    return type(processor_class.__name__, (processor_class,), {"__init__": __init__})


def load_processor(path: str | Path):
    """The model's processor (image processor + tokenizer + chat template), images only where the
    installed transformers cannot build the video half."""
    import transformers
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(path))
    except (AttributeError, ImportError, OSError, ValueError, TypeError) as error:
        config = transformers.AutoConfig.from_pretrained(str(path))
        names = transformers.models.auto.processing_auto.PROCESSOR_MAPPING_NAMES
        name = names.get(config.model_type)
        if not name or not hasattr(transformers, name):
            raise ModelError(f"cannot load the processor of {path}: {error}", where="model",
                             hint="the model directory needs its processor files (preprocessor_config.json "
                             "or processor_config.json) beside the tokenizer") from error
        return image_only(getattr(transformers, name)).from_pretrained(str(path))


def save_tokenizer(tokenizer, directory) -> None:
    """Write the tokenizer into a model directory; a vision-language model's processor (its image
    processor's settings) too, so the directory loads on its own. The tokenizer's chat template is written last."""
    processor = processor_for(tokenizer)
    if processor is not None:
        processor.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def image_token_id(model_config) -> int:
    """The id of the token a processor repeats once per image feature."""
    for key in ("image_token_id", "image_token_index"):
        value = getattr(model_config, key, None)
        if value is not None:
            return value
    raise ModelError(f"{model_config.model_type} names no image token", where="model")
