"""LoRA through PEFT: low-rank updates on the chosen linear layers, saved in PEFT's adapter format.

`init_from: RUN` continues a trained LoRA (an SFT run before GRPO or DPO): its weights become the
trainable adapter, and a frozen copy of them is kept as the `hone_start` adapter so that objectives
with a reference policy compare against where training started (`hone.methods.reference_policy`),
not against the bare base. The copy costs the adapter's size, never the base's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hone.config.base import Section


class Config(Section):
    type: Literal["lora"] = "lora"
    rank: int = Field(16, gt=0)
    alpha: float = Field(32.0, gt=0)
    """Scaling numerator: the update is scaled by alpha / rank."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]) or every linear layer but the output head."""
    init_from: str | None = None
    """A run directory (or its adapter/) trained with LoRA on the same base: continue from its adapter
    (its rank, alpha and target modules are used; the options above are then ignored)."""


START_ADAPTER = "hone_start"


def apply(model, config: Config):
    from peft import LoraConfig, get_peft_model

    if config.init_from:
        return continue_from(model, config.init_from)

    peft_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def continue_from(model, run):
    """The adapter of `run` made trainable on `model`, plus a frozen copy of it as `hone_start`."""
    from peft import PeftModel

    from hone.errors import ConfigError
    from hone.models.artifact import adapter_dir, read_manifest

    directory = adapter_dir(run)
    method = read_manifest(directory).get("method", {}).get("type")
    if method != "lora":
        raise ConfigError(f"{run} was trained with method {method!r}; init_from needs a LoRA run",
                          where="method.init_from")
    model = PeftModel.from_pretrained(model, directory, is_trainable=True)
    model.load_adapter(directory, adapter_name=START_ADAPTER, is_trainable=False)
    model.set_adapter("default")
    return model


def save(model, directory) -> None:
    model.save_pretrained(directory, selected_adapters=["default"])


def load(base, directory):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, directory).eval()
