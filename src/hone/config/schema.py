"""`RunConfig`: one validated object per run, the same from the CLI, the Python API or HTTP.

Each field is documented once, here. Methods and objectives are chosen by `type` from the
registries in `hone.methods` and `hone.objectives`; their options live beside their code.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

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
    preference pairs (dpo, orpo, simpo, reward; kto takes them too); judged completions `{"prompt",
    "completion", "label": true|false}` (kto); labelled `{"text", "label"}` records (classify); prompts (grpo:
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
    replay: float = Field(0.0, ge=0.0, lt=1.0)
    """Fraction of the training examples that are general text replayed against forgetting (shipped
    paragraphs of Python's docs, disjoint from the forgetting probe); 0.2 adds 1 replay per 4 task examples."""


class EarlyStoppingConfig(Section):
    patience: int = Field(3, gt=0)
    """Evaluations without improvement before training stops."""
    metric: str = "val_loss"
    """`val_loss` (lower is better) or a key of `eval.metric` (higher is better, e.g. field_accuracy),
    scored by generating answers for up to `max_items` validation examples at each evaluation."""
    min_delta: float = Field(0.0, ge=0.0)
    """The smallest change that counts as an improvement."""
    max_items: int = Field(64, gt=0)


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
    optimizer: Literal["adamw", "adamw_fused", "adamw_foreach", "adamw_8bit"] = "adamw"
    """AdamW as torch's default, fused or multi-tensor (foreach) kernels, or bitsandbytes' 8-bit AdamW
    (both moments in 8 bits: ~2 bytes of optimizer state per parameter instead of 8)."""
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    """Matmul precision: bf16/fp16 autocast keeps fp32 trainable weights and an fp32 loss (fp16 adds a
    gradient scaler); `auto` picks bf16 where the hardware runs it fast (CUDA with bf16, or a CPU with
    AVX512-BF16/AMX), fp16 on older GPUs, and fp32 elsewhere."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: `auto` is CUDA when a GPU is visible (under torchrun, each process its local GPU)."""
    distributed: Literal["none", "ddp", "fsdp"] = "none"
    """With several processes (`hone train --nproc N` or torchrun): replicate (ddp) or shard (fsdp,
    FSDP2) the model; `none` becomes ddp when more than one process is launched."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in backward: much less memory, ~1/3 more compute."""
    compile: bool = False
    """torch.compile each decoder layer (regional: quick to compile, reused by every layer)."""
    threads: int | None = Field(None, gt=0)
    """CPU threads for torch (default: the cores available to this process)."""
    early_stopping: EarlyStoppingConfig | None = None
    """Stop when the validation score has not improved for `patience` evaluations (needs validation data)."""
    best_checkpoint: bool = True
    """Write the artifact from the best evaluation (by `early_stopping.metric`, else val_loss), not the last step."""
    l2sp: float = Field(0.0, ge=0.0)
    """L2-SP strength: adds l2sp/2 * ||w - w_base||^2 over trainable weights that have a base value
    (full or layer tuning; LoRA's new matrices have none, so it does nothing there)."""
    memory_check: bool = True
    """Refuse, before the model loads, a run whose estimated memory exceeds `memory_limit_gb`."""
    memory_limit_gb: float | None = Field(None, gt=0)
    """Memory each process of a run may use (default: a GPU's free memory, or this machine's MemAvailable
    from /proc/meminfo shared among its processes, when the run starts)."""

    @field_validator("optimizer")
    @classmethod
    def _optimizer_available(cls, value):
        from hone.train.optim import optimizer_problem

        problem = optimizer_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
    metric: str = "exact_match"
    """exact_match | json | labels, or a metric registered with `hone.evaluate.metrics.register_metric`."""
    grader: GraderConfig | None = None
    """A grader spec (`hone.rewards`, e.g. `{type: json, json_schema: {...}}`) that scores each held-out
    item instead of `metric`; the item is `{messages, prompt, reference, where}`."""
    max_new_tokens: int = Field(256, gt=0)
    batch_size: int = Field(16, gt=0)
    instruction: str | None = None
    """The system message of the prompted-base contender (`hone eval`, `hone report`)."""
    shots: int = Field(0, ge=0)
    """Worked examples from `data.train` in the prompted-base contender's prompt."""
    perplexity: bool = True
    """Also measure each contender's perplexity of the reference answers."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        from hone.evaluate.metrics import METRICS

        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; expected one of {', '.join(sorted(METRICS))}")
        return value


class ForgettingConfig(Section):
    enabled: bool = False
    """Score base and tuned model on hone's forgetting suite after training (on when max_drop is set)."""
    max_drop: float | dict[str, float] | None = None
    """The largest allowed drop per part (or {part: drop}); more fails the run's forgetting gate.
    Parts: general_text (relative perplexity rise), arithmetic, facts, instructions (accuracy points)."""
    max_new_tokens: int = Field(48, gt=0)
    batch_size: int = Field(16, gt=0)

    @field_validator("max_drop")
    @classmethod
    def _known_parts(cls, value):
        from hone.evaluate.forgetting import PARTS

        if isinstance(value, dict):
            unknown = sorted(set(value) - set(PARTS))
            if unknown:
                raise ValueError(f"unknown part {unknown[0]!r}; expected one of {', '.join(PARTS)}")
        return value

    @property
    def active(self) -> bool:
        return self.enabled or self.max_drop is not None


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
    forgetting: ForgettingConfig = ForgettingConfig()

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

    @model_validator(mode="after")
    def _parts_fit_run(self):
        """The method or the objective may refuse other settings of the run (packing for virtual-token
        methods; a method without an adapter for GRPO's KL reference)."""
        from hone.methods import method_for
        from hone.objectives import OBJECTIVES

        for part in (method_for(self.method.type), OBJECTIVES[self.objective.type]):
            check = getattr(part, "check_run", None)
            if check is not None:
                check(self)
        return self
