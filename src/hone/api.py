"""hone's Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import json
import time
from pathlib import Path

from hone.config.load import load_config
from hone.config.schema import RunConfig
from hone.data.formats import parse_message
from hone.data.record_errors import RecordError
from hone.data.template import text_prompt_ids
from hone.errors import ConfigError, DataError, HoneError
from hone.evaluate.compare import compare_contenders as compare
from hone.evaluate.forgetting import check_forgetting, render_table
from hone.evaluate.task import EvalResult, evaluate_task, read_task
from hone.export.gguf import write_gguf
from hone.export.merge_runs import merge_runs  # noqa: F401 (hone.merge_runs, `hone merge`)
from hone.methods import METHODS
from hone.methods.tuned import load_for_inference, load_tuned
from hone.models.artifact import adapter_dir, read_manifest, update_manifest, update_metrics
from hone.models.generate import generate_batch, generate_from_ids
from hone.models.load import load_tokenizer, resolve_model, set_threads
from hone.objectives import build_objective
from hone.objectives.score import read_for_scoring, score_examples
from hone.objectives.teacher import write_teacher_file
from hone.rewards.metric import eval_grader
from hone.train.estimate import estimate_run
from hone.train.loop import describe_run_dir, run_training


def train(config: RunConfig | str | Path | dict | None = None, overrides: list[str] | dict | None = None, *,
          resume: str | Path | None = None, preset: str | None = None, progress: bool = True, log=print):
    """Fine-tune as `config` says (a RunConfig, a YAML path or a dict); `resume` continues a run dir.

    Returns a `TrainResult` (run_dir, adapter_dir, steps, metrics, evaluation). When `eval.file` is
    set, the tuned model is scored on it: the scores land in the metrics and the adapter's hone.json,
    the predictions in `evaluation`.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("not a run directory (no config.yaml)", where=str(run_dir))
        config = load_config(run_dir / "config.yaml", overrides)
    else:
        config = load_config(config, overrides, preset=preset)
        run_dir = Path(config.output_dir) / (config.name or time.strftime("%Y%m%d-%H%M%S"))
        if (run_dir / "checkpoints").exists() or (run_dir / "adapter").exists():
            raise ConfigError(f"run directory {run_dir} already holds a run", where="name",
                              hint=f"continue it with --resume {run_dir}, or choose another name=")
    if config.eval.file:
        read_task(config.eval.file)  # a bad eval file fails now, not after training
    result = run_training(config, run_dir, resume=resume is not None, progress=progress, log=log)
    if result.rank != 0:  # under torchrun, rank 0 alone evaluates and writes the run's status
        return result
    if config.eval.file:
        scored = compare(config.eval.file, adapter=result.adapter_dir, metric=config.eval.metric, contenders=("tuned",),
                         max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size,
                         perplexity=config.eval.perplexity, grader=config.eval.grader, threads=config.train.threads,
                         progress=progress, log=log)
        tuned = scored.results["tuned"]
        result.evaluation = EvalResult(tuned["metrics"], tuned["predictions"], scored.items)
        result.metrics.update({f"eval_{k}": v for k, v in result.evaluation.metrics.items()})
        update_metrics(result.adapter_dir, result.metrics)
    if config.forgetting.active:
        result.status = forgetting_gate(result, config.forgetting, threads=config.train.threads, log=log)
    result.metrics["status"] = result.status
    set_status(result.adapter_dir, result.status, result.metrics)
    log(describe_run_dir(result.run_dir))
    log(f"run {result.status}")
    return result


def distill(prompts: str | Path, *, teacher_base_url: str, teacher_model: str, out: str | Path | None = None,
            api_key: str | None = None, max_new_tokens: int = 512, temperature: float = 0.0,
            train_config: RunConfig | str | Path | dict | None = None, overrides: list[str] | None = None,
            no_train: bool = False, progress: bool = True, log=print):
    """Sample a teacher (any OpenAI-compatible endpoint) on a prompts file, keep its answers as a chat
    training file with their provenance (`out`, default PROMPTS.teacher.jsonl), then fine-tune on it as
    `hone train` would (`train_config` and `overrides`, `data.train` set to the file) unless `no_train`.

    Returns (the training file, the TrainResult or None).
    """
    out = Path(out) if out else Path(prompts).with_suffix(".teacher.jsonl")
    hint = "check --teacher-base-url (the base URL, ending in /v1), --teacher-model and the key (--api-key)"
    kept, asked = write_teacher_file(prompts, out, base_url=teacher_base_url, model=teacher_model,
                                     max_new_tokens=max_new_tokens, temperature=temperature, api_key=api_key, hint=hint)
    log(f"{kept} teacher answers written to {out}" + (f" ({asked - kept} empty answers left out)" if kept < asked
                                                      else ""))
    if no_train:
        return out, None
    if kept == 0:
        raise DataError("the teacher gave no answer to train on", where=str(out),
                        hint="check the teacher's replies, or raise --max-new-tokens")
    return out, train(train_config, [*(overrides or []), f"data.train={out}"], progress=progress, log=log)


def forgetting_gate(result, options, *, threads: int | None = None, log=print) -> str:
    """Run the forgetting suite on a finished run, write forgetting.json, and say the run's status."""
    found = check_forgetting(result.adapter_dir, max_drop=options.max_drop, max_new_tokens=options.max_new_tokens,
                             batch_size=options.batch_size, threads=threads, progress_log=log)
    table = found["table"]
    (Path(result.run_dir) / "forgetting.json").write_text(json.dumps(found, indent=2))
    log(render_table(table))
    result.metrics.update({f"forgetting_{part}_delta": row["delta"] for part, row in table["parts"].items()})
    result.metrics["forgetting_passed"] = table["passed"]
    update_metrics(result.adapter_dir, result.metrics)
    if table["passed"]:
        return "succeeded"
    log(f"forgetting gate: {', '.join(table['failed_parts'])} dropped more than forgetting.max_drop allows")
    return "failed the forgetting gate"


def set_status(adapter_dir, status: str, metrics: dict) -> None:
    update_manifest(adapter_dir, {"status": status, "metrics": {**read_manifest(adapter_dir)["metrics"], **metrics}})


def estimate(config: RunConfig | str | Path | dict | None = None, overrides: list[str] | dict | None = None, *,
             preset: str | None = None, methods: list[str] | None = None, all_methods: bool = False,
             calibration_steps: int = 3, processes: int = 1, log=print):
    """Memory (weights, gradients, optimizer, activations) and time per epoch of a run, per method.

    By default for the configured method; `all_methods` (or a `methods` list) gives every registered
    one with its default options. `calibration_steps=0` skips the measured part (time). With
    `processes` > 1 the memory is per process (`train.distributed`: ddp replicates, fsdp shards). Returns an
    `Estimate`; `.render()` is the table `hone estimate` prints.
    """
    config = load_config(config, overrides, preset=preset)
    set_threads(config.train.threads)
    objective, data = None, None
    if config.data.train:  # prepared as training prepares it (the objective keeps what it decides there)
        objective = build_objective(config.objective)
        data = objective.prepare(config.data, load_tokenizer(config.model), seed=config.train.seed)
    names = list(METHODS) if all_methods else methods
    return estimate_run(config, methods=names, calibration_steps=calibration_steps, data=data, objective=objective,
                        processes=processes, log=log)


def evaluate(file: str | Path, *, adapter: str | Path | None = None, model: str | None = None,
             metric: str = "exact_match", prompt=None, max_new_tokens: int = 256, batch_size: int = 16,
             progress: bool = True, grader=None):
    """Score the base `model` or a tuned `adapter` on a held-out chat file; returns an EvalResult.

    `grader` (a spec dict, inline JSON, a JSON/YAML file or a grader config) scores instead of `metric`.
    """
    grader = eval_grader(metric, grader)  # bad input fails before a model is loaded
    items = read_task(str(file))
    loaded, tokenizer = load_for_inference(adapter=adapter, model=model)
    return evaluate_task(loaded, tokenizer, items, metric, prompt=prompt, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=progress, grader=grader)


def generate(prompt: str | list[dict] | list[list[dict]], *, adapter: str | Path | None = None,
             model: str | None = None, system: str | None = None, max_new_tokens: int = 256,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None, raw: bool = False,
             tools: list[dict] | None = None, images: list[str] | None = None):
    """Complete a prompt (a string, a message list, or a list of message lists) with a base or tuned model,
    offering `tools` (OpenAI's function tools) to every conversation when given.

    `images` (paths, data: URLs) go before a string prompt, for a vision-language model; messages may
    also hold OpenAI's `image_url` content parts.

    Returns a string for a single prompt and a list of strings for a list of conversations. `raw`
    continues a string prompt as plain text, without a chat template (how a base model is prompted).
    """
    loaded, tokenizer = load_for_inference(adapter=adapter, model=model)
    if raw:
        if not isinstance(prompt, str) or system is not None:
            raise HoneError("a raw prompt is one plain string", where="--raw", hint="drop --system with --raw")
        return generate_from_ids(loaded, tokenizer, [text_prompt_ids(prompt, tokenizer)], max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, seed=seed)[0]
    single = not (isinstance(prompt, list) and prompt and isinstance(prompt[0], list))
    conversations = [_messages(prompt, system, images)] if single else [_messages(p, system) for p in prompt]
    outputs = generate_batch(loaded, tokenizer, conversations, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, seed=seed,
                             tools=[tools] * len(conversations) if tools else None)
    return outputs[0] if single else outputs


def score(file: str | Path, *, adapter: str | Path, batch_size: int = 16) -> list[dict]:
    """Score a JSONL file with a reward model or classifier run; one dict per record (see `hone score`).

    Reward: `{"where", "score"}` for a conversation ending with the reply to score (chat,
    prompt/completion, alpaca), `{"where", "chosen_score", "rejected_score", "correct"}` for a
    preference pair. Classify: `{"where", "label", "probabilities", "gold"?}` for text or labelled records.
    """
    kind = read_manifest(adapter_dir(adapter)).get("objective", {}).get("type")
    if kind not in ("reward", "classify"):
        raise HoneError(f"{adapter} was trained with objective {kind!r}; scoring needs a reward or classify run",
                        where=str(adapter), hint="train with objective=reward or objective=classify")
    examples = read_for_scoring(str(file), kind)  # bad input fails before a model is loaded
    set_threads(None)
    loaded, tokenizer, manifest = load_tuned(adapter)
    return score_examples(loaded, tokenizer, manifest, examples, batch_size=batch_size)


def export_gguf(source: str | Path, out: str | Path, *, dtype: str = "f16") -> Path:
    """Write `source` (a transformers model directory or a shipped model name) as a llama.cpp GGUF file."""
    path = Path(source)
    if (path / "hone.json").is_file() or (path / "adapter" / "hone.json").is_file():
        raise HoneError("this is a tuned adapter, not a full model", where=str(source),
                        hint="merge it into its base first (hone export --merge RUN --out DIR), then export DIR")
    return write_gguf(resolve_model(str(source)).path, out, dtype=dtype)


def _messages(prompt, system: str | None, images: list[str] | None = None) -> list[dict]:
    if isinstance(prompt, str) and images:
        prompt = [{"role": "user", "content": [*({"type": "image_url", "image_url": {"url": url}} for url in images),
                                               {"type": "text", "text": prompt}]}]
    elif images:
        raise HoneError("images go with a string prompt", where="images",
                        hint="put image_url parts in the messages instead")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system})
    try:  # content parts (images) become hone's message shape
        return [parse_message(m, f"messages[{i}]", tools=True) if isinstance(m.get("content"), list) else m
                for i, m in enumerate(messages)]
    except RecordError as error:
        raise HoneError(error.message, where=error.field or "messages") from None
