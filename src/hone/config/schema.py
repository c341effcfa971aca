"""`RunConfig`: one validated object per run, the same from the CLI, the Python API or HTTP.

Each field is documented once, here. Methods and objectives are chosen by `type` from the
registries in `hone.methods` and `hone.objectives`; their options live beside their code.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from hone.config.base import Section
from hone.methods import METHOD_CONFIGS
from hone.models.registry import DEFAULT_MODEL
from hone.objectives import OBJECTIVE_CONFIGS
from hone.rewards import GraderConfig

MethodConfig = Annotated[Union[tuple(METHOD_CONFIGS.values())], Field(discriminator="type")]
ObjectiveConfig = Annotated[Union[tuple(OBJECTIVE_CONFIGS.values())], Field(discriminator="type")]


class DataConfig(Section):
    train: str | None = None
    """Training JSONL: chat `messages`, `prompt`/`completion`, alpaca or raw `text` records (sft);
    preference pairs (dpo, reward); labelled `{"text", "label"}` records (classify); prompts (grpo:
    conversations ending with a user turn plus grader fields, or chat records)."""
    validation: str | None = None
    """Validation JSONL; when absent, `validation_fraction` of `train` is held out deterministically."""
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    max_length: int = Field(512, gt=1)
    """Examples longer than this many tokens are truncated (and counted in the data report)."""
    loss_on: Literal["assistant", "all"] = "assistant"
    """Which chat tokens carry loss; raw `text` records always train on every token."""
    packing: bool = True
    """Pack several examples per row (no attention across examples, positions restart)."""
    strict: bool = True
    """Refuse a file with any invalid line (True) or skip invalid lines and say how many (False)."""


class TrainConfig(Section):
    lr: float = Field(2e-4, gt=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    batch_size: int | None = Field(None, gt=0)
    """Examples per micro-batch (default 8 when `batch_tokens` is not set)."""
    batch_tokens: int | None = Field(None, gt=0)
    """Tokens per micro-batch (padding excluded); exclusive with `batch_size`."""
    grad_accum: int = Field(1, gt=0)
    """Micro-batches per optimizer step; the loss is normalised by target tokens across all of them."""
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0
    eval_every: int | None = Field(None, gt=0)
    """Validation loss every N steps (always at the end)."""
    save_every: int | None = Field(None, gt=0)
    """Checkpoint every N steps (always at the end), written atomically."""
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """Matmul precision: bf16 autocast keeps fp32 weights and an fp32 loss; `auto` picks bf16 where the
    hardware runs it fast (CUDA with bf16, or a CPU with AVX512-BF16/AMX) and fp32 elsewhere."""
    threads: int | None = Field(None, gt=0)
    """CPU threads for torch (default: the cores available to this process)."""

    @model_validator(mode="before")
    @classmethod
    def _one_batch_unit(cls, data):
        if isinstance(data, dict):
            if data.get("batch_size") is not None and data.get("batch_tokens") is not None:
                raise ValueError("set train.batch_size or train.batch_tokens, not both")
            if data.get("batch_size") is None and data.get("batch_tokens") is None:
                data = {**data, "batch_size": 8}
        return data


class EvalConfig(Section):
    file: str | None = None
    """Held-out JSONL scored after training (the last assistant turn is the reference)."""
    metric: Literal["exact_match", "json"] = "exact_match"
    grader: GraderConfig | None = None
    """A grader spec (`hone.rewards`, e.g. `{type: json, json_schema: {...}}`) that scores each held-out
    item instead of `metric`; the item is `{messages, prompt, reference, where}`."""
    max_new_tokens: int = Field(256, gt=0)
    batch_size: int = Field(16, gt=0)


class RunConfig(Section):
    model: str = DEFAULT_MODEL
    """A shipped model name, a Hugging Face model directory, a .gguf file or a hub id."""
    name: str | None = None
    """Run name; the run directory is `output_dir/name` (default: a timestamp)."""
    output_dir: str = "runs"
    data: DataConfig = DataConfig()
    method: MethodConfig = Field(default_factory=lambda: METHOD_CONFIGS["lora"]())
    objective: ObjectiveConfig = Field(default_factory=lambda: OBJECTIVE_CONFIGS["sft"]())
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _type_shorthand(cls, data):
        """`method: lora` means `method: {type: lora}` (same for `objective`)."""
        if isinstance(data, dict):
            data = dict(data)
            if "task" in data and "objective" not in data:  # issue 4 spells it `task: classify`
                data["objective"] = data.pop("task")
            for key, default in (("method", "lora"), ("objective", "sft")):
                if isinstance(data.get(key), str):
                    data[key] = {"type": data[key]}
                elif isinstance(data.get(key), dict) and "type" not in data[key]:
                    data[key] = {"type": default, **data[key]}
        return data
