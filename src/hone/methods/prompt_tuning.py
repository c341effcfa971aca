"""Prompt tuning through PEFT (Lester et al. 2021): V trainable input embeddings before every example,
initialised from a text's token embeddings or at random. Runs on hone's paths via `methods.virtual`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hone.config.base import Section
from hone.methods.base import Method
from hone.methods.virtual import attach, check_unpacked, load, save


class Config(Section):
    type: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, gt=0)
    """Length of the learned soft prompt, in token embeddings."""
    init: Literal["random", "text"] = "random"
    """Start the soft prompt from `init_text`'s token embeddings (repeated to length) or at random."""
    init_text: str | None = None
    """The words the soft prompt starts from, with `init: text`."""

    @model_validator(mode="after")
    def _text_with_text_init(self):
        if self.init == "text" and not (self.init_text or "").strip():
            raise ValueError("init=text needs init_text (the words to start the soft prompt from)")
        if self.init == "random" and self.init_text is not None:
            raise ValueError("init_text is only used with init=text")
        return self


def apply(model, config: Config):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    kwargs = {"prompt_tuning_init": PromptTuningInit.RANDOM}
    if config.init == "text":
        kwargs = {"prompt_tuning_init": PromptTuningInit.TEXT, "prompt_tuning_init_text": config.init_text,
                  "tokenizer_name_or_path": model.name_or_path}
    peft_config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens, **kwargs)
    return attach(get_peft_model(model, peft_config))


METHOD = Method("prompt_tuning", Config, apply, save, load, adapter=True, check_run=check_unpacked)
