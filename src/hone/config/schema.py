"""`RunConfig`: one validated object per run, the same from the CLI, the Python API or HTTP.

Each field is documented once, here or beside its code (a docstring under the field, or
`Field(description=...)`); docs/configuration.md is generated from these descriptions by
`python -m hone.config.reference`. Methods and objectives are chosen by `type` from the registries in
`hone.methods` and `hone.objectives`, whose options live with them, and the `data` section lives in
`hone.data.config`, below the code that reads it.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from hone.config.base import Section
from hone.data.config import DataConfig
from hone.data.shipped import PARTS
from hone.methods import METHOD_CONFIGS, method_for
from hone.models.registry import DEFAULT_MODEL
from hone.objectives import OBJECTIVE_CONFIGS, OBJECTIVES
from hone.rewards import GraderConfig
from hone.rewards.metric import metric_problem

MethodConfig = Annotated[Union[tuple(METHOD_CONFIGS.values())], Field(discriminator="type")]
ObjectiveConfig = Annotated[Union[tuple(OBJECTIVE_CONFIGS.values())], Field(discriminator="type")]


def optimizer_problem(name: str) -> str | None:
    """Why optimizer `name` cannot run here, or None (checked by the config validator, before any model loads)."""
    if name == "adamw_8bit" and importlib.util.find_spec("bitsandbytes") is None:
        return "adamw_8bit needs bitsandbytes (pip install bitsandbytes); use adamw here"
    return None


class EarlyStoppingConfig(Section):
    """Stop when the validation score has not improved for `patience` evaluations."""
    patience: int = Field(3, gt=0)
    """Evaluations without improvement before training stops."""
    metric: str = "val_loss"
    """`val_loss` (lower is better) or a key of `eval.metric` (higher is better, e.g. field_accuracy),
    scored by generating answers for up to `max_items` validation examples at each evaluation."""
    min_delta: float = Field(0.0, ge=0.0)
    """The smallest change that counts as an improvement."""
    max_items: int = Field(64, gt=0)
    """Validation examples answered per evaluation when `metric` is an `eval.metric` key."""


FOLDER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # one path part, never "..": it names a folder in the run


class TrackingConfig(Section):
    type: Literal["tensorboard"] = Field("tensorboard", description=(
        "Where each step's and evaluation's metrics also go: TensorBoard event files (offline; needs the "
        "`tracking` extra) under RUN/tracking/PROJECT/NAME; view with `tensorboard --logdir RUN/tracking`."))
    project: str = Field("hone", pattern=FOLDER_NAME, max_length=100,
                         description="The run group: the folder under RUN/tracking (letters, digits, . _ -).")
    name: str | None = Field(None, pattern=FOLDER_NAME, max_length=100,
                             description="The run's name in the tracker, its folder (default: the run's name).")
    entity: str | None = Field(None, description="The team or user the run belongs to, shown with its tags "
                                                 "(OpenAI's wandb integration has this field).")
    tags: list[str] = Field(default_factory=list, description="Labels shown with the run in the tracker.")


class TrainConfig(Section):
    """The optimizer, the schedule, batching, precision, devices and checkpoints."""
    lr: float = Field(2e-4, gt=0)
    """Peak learning rate (AdamW), reached after `warmup_steps`."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """How the learning rate falls after warmup: to 0 along a cosine or a line, or not at all."""
    warmup_steps: int = Field(0, ge=0)
    """Optimizer steps of linear warmup from 0 to `lr`."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the training examples (fractions allowed); `max_steps` overrides it."""
    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (overrides `epochs`)."""
    batch_size: int | None = Field(None, gt=0)
    """Examples per micro-batch (default 8 when `batch_tokens` is not set)."""
    batch_tokens: int | None = Field(None, gt=0)
    """Tokens per micro-batch (padding excluded); exclusive with `batch_size`."""
    grad_accum: int = Field(1, gt=0)
    """Micro-batches per optimizer step; the loss is normalised by target tokens across all of them."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW's decoupled weight decay on the trainable parameters."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Clip the gradient to this global L2 norm before each step (null: no clipping; the norm is still logged)."""
    seed: int = 0
    """Seeds the shuffling of examples, the validation split, few-shot draws and new weights."""
    eval_every: int | None = Field(None, gt=0)
    """Validation loss every N steps (always at the end)."""
    save_every: int | None = Field(None, gt=0)
    """Checkpoint every N steps and at the end, written atomically, for `hone train --resume` (null: no
    checkpoints, but an interrupted run still saves one where it stopped)."""
    keep_checkpoints: int = Field(1, ge=0)
    """How many of the newest step checkpoints stay on disk (older ones go as new ones are written); 0
    removes them all when the run ends. The best evaluation's weights stay while a step checkpoint does."""
    checkpoint_models: int = Field(0, ge=0, description=(
        "Keep the newest N checkpoints also as servable models, RUN/checkpoint_models/step-S written like "
        "adapter/ (the fine-tuning service keeps 3 and serves them as ft:...:ckpt-step-S); 0: none. Not "
        "written under FSDP, whose weights are whole only at the end."))
    tracking: TrackingConfig | None = Field(None, description=(
        "Send the metrics stream (metrics.jsonl's records) to an experiment tracker as well; none by default."))
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
    kernels: Literal["auto", "none", "liger", "compile"] = Field("auto", description=(
        "Fused kernels for RMSNorm, the rotary embedding and SwiGLU: `liger` (Liger Kernel's Triton kernels, "
        "pip install liger-kernel; CUDA only), `compile` (torch.compile of each decoder layer's norms and MLP), "
        "`none` (eager). `auto` is none on the CPU and, on CUDA, liger where Liger Kernel is installed and covers "
        "the architecture, else compile. `compile: true` means `kernels: compile`."))
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
    """Scoring the tuned model on held-out data after training (and `hone eval`'s defaults)."""
    file: str | None = None
    """Held-out JSONL scored after training (the last assistant turn is the reference)."""
    metric: str = "exact_match"
    """Shorthand for `grader: {type: METRIC}`: exact_match | json | labels, any grader type that needs no
    settings, or a metric registered with `hone.rewards.metric.register_metric`."""
    grader: GraderConfig | None = None
    """A grader spec (`hone.rewards`, e.g. `{type: json, json_schema: {...}}`) that scores each held-out
    item instead of `metric`; the item is `{messages, prompt, reference, where}`."""
    max_new_tokens: int = Field(256, gt=0)
    """The longest answer generated per held-out item (greedy)."""
    batch_size: int = Field(16, gt=0)
    """Held-out items generated together in one batch."""
    instruction: str | None = None
    """The system message of the prompted-base contender (`hone eval`, `hone report`)."""
    shots: int = Field(0, ge=0)
    """Worked examples from `data.train` in the prompted-base contender's prompt."""
    perplexity: bool = True
    """Also measure each contender's perplexity of the reference answers."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        problem = metric_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class ForgettingConfig(Section):
    """hone's forgetting suite: what the tuned model lost of the base's general abilities."""
    enabled: bool = False
    """Score base and tuned model on hone's forgetting suite after training (on when max_drop is set)."""
    max_drop: float | dict[str, float] | None = None
    """The largest allowed drop per part (or {part: drop}); more fails the run's forgetting gate.
    Parts: general_text (relative perplexity rise), arithmetic, facts, instructions (accuracy points)."""
    max_new_tokens: int = Field(48, gt=0)
    """The longest answer generated per question of the suite (greedy)."""
    batch_size: int = Field(16, gt=0)
    """Questions generated together in one batch."""

    @field_validator("max_drop")
    @classmethod
    def _known_parts(cls, value):
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(PARTS))
            if unknown:
                raise ValueError(f"unknown part {unknown[0]!r}; expected one of {', '.join(PARTS)}")
        return value

    @property
    def active(self) -> bool:
        return self.enabled or self.max_drop is not None


class RunConfig(Section):
    """One run: the base model, the data, what trains (method), the loss (objective), training, evaluation."""
    model: str = DEFAULT_MODEL
    """A shipped model name, a Hugging Face model directory, a .gguf file or a hub id."""
    name: str | None = None
    """Run name; the run directory is `output_dir/name` (default: a timestamp)."""
    output_dir: str = "runs"
    """The folder that holds run directories."""
    data: DataConfig = DataConfig()
    """Training and validation data (section `data`)."""
    method: MethodConfig = Field(default_factory=lambda: METHOD_CONFIGS["lora"]())
    """What trains, chosen by `type` (section `method`); `method: lora` is short for `{type: lora}`."""
    objective: ObjectiveConfig = Field(default_factory=lambda: OBJECTIVE_CONFIGS["sft"]())
    """The loss and the data it takes, chosen by `type` (section `objective`)."""
    train: TrainConfig = TrainConfig()
    """Training settings (section `train`)."""
    eval: EvalConfig = EvalConfig()
    """Held-out evaluation after training (section `eval`)."""
    forgetting: ForgettingConfig = ForgettingConfig()
    """The forgetting suite and its gate (section `forgetting`)."""

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
        for part in (method_for(self.method.type), OBJECTIVES[self.objective.type]):
            part.check_run(self)
        return self
