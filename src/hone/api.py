"""hone's Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import time
from pathlib import Path

from hone.config.load import load_config
from hone.config.schema import RunConfig
from hone.errors import ConfigError, HoneError


def train(config: RunConfig | str | Path | dict | None = None, overrides: list[str] | dict | None = None, *,
          resume: str | Path | None = None, preset: str | None = None, progress: bool = True, log=print):
    """Fine-tune as `config` says (a RunConfig, a YAML path or a dict); `resume` continues a run dir.

    Returns a `TrainResult` (run_dir, adapter_dir, steps, metrics, evaluation). When `eval.file` is
    set, the tuned model is scored on it: the scores land in the metrics and the adapter's hone.json,
    the predictions in `evaluation`.
    """
    from hone.models.artifact import update_metrics
    from hone.train.loop import run_training

    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("not a run directory (no config.yaml)", where=str(run_dir))
        config = load_config(run_dir / "config.yaml", overrides)
    else:
        config = load_config(config, overrides, preset=preset)
        run_dir = Path(config.output_dir) / (config.name or time.strftime("%Y%m%d-%H%M%S"))
        if (run_dir / "checkpoints").exists():
            raise ConfigError(f"run directory {run_dir} already holds a run", where="name",
                              hint=f"continue it with --resume {run_dir}, or choose another name=")
    if config.eval.file:
        from hone.evaluate.task import read_task

        read_task(config.eval.file)  # a bad eval file fails now, not after training
    result = run_training(config, run_dir, resume=resume is not None, progress=progress, log=log)
    if result.rank != 0:  # under torchrun, rank 0 alone evaluates and writes the run's status
        return result
    if config.eval.file:
        from hone.evaluate.task import EvalResult

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
    log(f"run {result.status}")
    return result


def forgetting_gate(result, options, *, threads: int | None = None, log=print) -> str:
    """Run the forgetting suite on a finished run, write forgetting.json, and say the run's status."""
    import json

    from hone.evaluate.forgetting import check_forgetting, render_table
    from hone.models.artifact import update_metrics

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
    from hone.models.artifact import read_manifest, update_manifest

    update_manifest(adapter_dir, {"status": status, "metrics": {**read_manifest(adapter_dir)["metrics"], **metrics}})


def compare(file, *, adapter=None, model: str | None = None, metric: str = "exact_match",
            contenders=("base", "prompted", "tuned"), instruction: str | None = None, shots: int = 0,
            train_file: str | None = None, max_new_tokens: int = 256, batch_size: int = 16,
            perplexity: bool = True, grader=None, threads: int | None = None, progress: bool = True, log=print):
    """Score base zero-shot, base with the best prompt and the tuned adapter on `file` (cached).

    The prompt's worked examples come from `train_file` (default: the adapter's training file).
    `grader` (a spec dict, inline JSON, a JSON/YAML file or a grader config) replaces `metric`.
    """
    from hone.evaluate.compare import EvalSettings, compare as run_compare, few_shot_prompt
    from hone.models.artifact import adapter_dir, read_manifest

    if adapter is not None and model is not None:
        raise HoneError("give an adapter or a model, not both", where="--model",
                        hint="an adapter already names its base model in hone.json")
    if train_file is None and adapter is not None and shots:
        train_file = (read_manifest(adapter_dir(adapter)).get("data") or {}).get("train")
    prompt = few_shot_prompt(train_file, shots, instruction)
    if grader is not None:
        from hone.rewards.spec import dump_spec, load_spec

        grader = dump_spec(load_spec(grader))  # a bad spec fails before any model loads
    settings = EvalSettings(metric, max_new_tokens, batch_size, perplexity, grader)
    return run_compare(file, adapter=adapter, model=model, contenders=tuple(contenders), prompt=prompt,
                       settings=settings, threads=threads, progress=progress, log=log)


def estimate(config: RunConfig | str | Path | dict | None = None, overrides: list[str] | dict | None = None, *,
             preset: str | None = None, methods: list[str] | None = None, all_methods: bool = False,
             calibration_steps: int = 3, processes: int = 1, log=print):
    """Memory (weights, gradients, optimizer, activations) and time per epoch of a run, per method.

    By default for the configured method; `all_methods` (or a `methods` list) gives every registered
    one with its default options. `calibration_steps=0` skips the measured part (time). With
    `processes` > 1 the memory is per process (`train.distributed`: ddp replicates, fsdp shards). Returns an
    `Estimate`; `.render()` is the table `hone estimate` prints.
    """
    from hone.methods import METHODS
    from hone.models.estimate import estimate_run
    from hone.train.loop import set_threads

    config = load_config(config, overrides, preset=preset)
    set_threads(config.train.threads)
    examples = None
    if config.data.train:
        from hone.models.load import load_tokenizer
        from hone.objectives import build_objective

        objective = build_objective(config.objective)
        examples = objective.prepare(config.data, load_tokenizer(config.model), seed=config.train.seed).train
    names = list(METHODS) if all_methods else methods
    return estimate_run(config, methods=names, calibration_steps=calibration_steps, examples=examples,
                        processes=processes, log=log)


def evaluate(file: str | Path, *, adapter: str | Path | None = None, model: str | None = None,
             metric: str = "exact_match", prompt=None, max_new_tokens: int = 256, batch_size: int = 16,
             progress: bool = True, grader=None):
    """Score the base `model` or a tuned `adapter` on a held-out chat file; returns an EvalResult.

    `grader` (a spec dict, inline JSON, a JSON/YAML file or a grader config) replaces `metric`.
    """
    from hone.evaluate.metrics import metric_for
    from hone.evaluate.task import evaluate_task, read_task

    if grader is not None:
        from hone.rewards.spec import load_spec

        grader = load_spec(grader)  # bad input fails before a model is loaded
    else:
        metric_for(metric)
    items = read_task(str(file))
    loaded, tokenizer = load_for_inference(adapter=adapter, model=model)
    return evaluate_task(loaded, tokenizer, items, metric, prompt=prompt, max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=progress, grader=grader)


def generate(prompt: str | list[dict] | list[list[dict]], *, adapter: str | Path | None = None,
             model: str | None = None, system: str | None = None, max_new_tokens: int = 256,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
             tools: list[dict] | None = None):
    """Complete a prompt (a string, a message list, or a list of message lists) with a base or tuned model,
    offering `tools` (OpenAI's function tools) to every conversation when given.

    Returns a string for a single prompt and a list of strings for a list of conversations.
    """
    from hone.infer.generate import generate_batch

    loaded, tokenizer = load_for_inference(adapter=adapter, model=model)
    single = not (isinstance(prompt, list) and prompt and isinstance(prompt[0], list))
    conversations = [_messages(prompt, system)] if single else [_messages(p, system) for p in prompt]
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
    from hone.infer.score import read_for_scoring, score_examples
    from hone.models.artifact import adapter_dir, load_tuned, read_manifest
    from hone.train.loop import set_threads

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
    from hone.export.gguf import write_gguf
    from hone.models.load import resolve_model

    path = Path(source)
    if (path / "hone.json").is_file() or (path / "adapter" / "hone.json").is_file():
        raise HoneError("this is a tuned adapter, not a full model", where=str(source),
                        hint="merge it into its base first (hone export --merge RUN --out DIR), then export DIR")
    return write_gguf(resolve_model(str(source)).path, out, dtype=dtype)


def load_for_inference(*, adapter=None, model: str | None = None, threads: int | None = None):
    """(model, tokenizer) for a tuned artifact or a base model spec (the default model if neither);
    torch uses `threads` CPU threads (default: every core available)."""
    from hone.models.artifact import load_tuned
    from hone.models.load import load_model
    from hone.models.registry import DEFAULT_MODEL
    from hone.train.loop import set_threads

    set_threads(threads)
    if adapter is not None:
        if model is not None:
            raise HoneError("give an adapter or a model, not both", where="--model",
                            hint="an adapter already names its base model in hone.json")
        loaded, tokenizer, _ = load_tuned(adapter)
        return loaded, tokenizer
    loaded, tokenizer, _ = load_model(model or DEFAULT_MODEL)
    return loaded, tokenizer


def _messages(prompt, system: str | None) -> list[dict]:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system})
    return messages
