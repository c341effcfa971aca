"""Did fine-tuning help? The base model zero-shot, the base model with the best prompt, and the tuned
model, scored side by side on the same held-out file.

"The best prompt" is an instruction plus k worked examples (few-shot) drawn from the training file:
what a user could do without training at all. Each contender's generations, per-example scores and
reference perplexity are cached by (base weights, adapter files, data file, settings), so scoring
again, or rendering a report, is instant.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hone.data.prompts import task_item
from hone.errors import ConfigError, HoneError
from hone.evaluate.cache import ResultCache, adapter_sha256, cache_key, file_sha256
from hone.evaluate.perplexity import example_nll, perplexity, reference_example
from hone.evaluate.task import TaskItem, read_task
from hone.methods.tuned import load_for_inference
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.generate import generate_batch
from hone.models.load import resolve_model
from hone.models.registry import DEFAULT_MODEL
from hone.paths import hone_home
from hone.rewards.metric import eval_grader, score_outputs
from hone.rewards.spec import dump_spec, load_spec

CONTENDERS = ("base", "prompted", "tuned")
LABELS = {"base": "base, zero-shot", "prompted": "base, best prompt", "tuned": "tuned"}


@dataclass
class FewShotPrompt:
    """Re-prompts a conversation: `instruction` replaces its system message, then each shot (its user
    turns, then its answer) comes before the conversation's own turns."""

    instruction: str | None = None
    shots: list[tuple[list[dict], str]] = field(default_factory=list)

    def __call__(self, messages: list[dict]) -> list[dict]:
        system = [m for m in messages if m["role"] == "system"]
        if self.instruction is not None:
            system = [{"role": "system", "content": self.instruction}]
        out = list(system)
        for turns, answer in self.shots:
            out += [*turns, {"role": "assistant", "content": answer}]
        return out + [m for m in messages if m["role"] != "system"]

    def describe(self) -> dict:
        return {"instruction": self.instruction, "shots": [[t, a] for t, a in self.shots]}


def few_shot_prompt(train_file: str | None, k: int, instruction: str | None = None, *,
                    seed: int = 0) -> FewShotPrompt | None:
    """An instruction plus `k` examples sampled (seeded) from `train_file`; None when neither is given."""
    shots = []
    if k > 0 and train_file:
        pool = read_task(train_file)
        for item in random.Random(seed).sample(pool, min(k, len(pool))):
            shots.append(([m for m in item.messages if m["role"] != "system"], item.reference))
    if instruction is None and not shots:
        return None
    return FewShotPrompt(instruction, shots)


@dataclass
class EvalSettings:
    """What changes a contender's answers (so it is part of the cache key)."""

    metric: str = "exact_match"
    max_new_tokens: int = 256
    batch_size: int = 16
    perplexity: bool = True
    grader: dict | None = None  # a normalised grader spec (hone.rewards); scores instead of `metric` when set


@dataclass
class Comparison:
    file: str
    metric: str
    items: list[TaskItem]
    results: dict[str, dict]  # contender -> {metrics, predictions, scores, nll}
    notes: list[str] = field(default_factory=list)
    primary: str | None = None  # the key of each item's scores that ranks wins and losses

    def to_dict(self) -> dict:
        return {"file": self.file, "metric": self.metric, "primary": self.primary, "notes": self.notes,
                "items": [asdict(i) for i in self.items], "results": self.results}

    def table(self) -> str:
        """A Markdown table of every metric key, one row per contender."""
        keys = [k for k in next(iter(self.results.values()))["metrics"] if k != "n"] if self.results else []
        lines = ["| contender | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for name, result in self.results.items():
            cells = [_cell(k, result["metrics"].get(k)) for k in keys]
            lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def score_contender(model, tokenizer, items: list[TaskItem], settings: EvalSettings, *, prompt=None,
                    progress: bool = True) -> dict:
    """Generate (batched, greedy), score each item, and measure the reference's perplexity under the prompt."""
    from tqdm.auto import tqdm

    conversations = [prompt(item.messages) if prompt else item.messages for item in items]
    with tqdm(total=len(items), desc="eval", unit="ex", disable=not progress) as bar:
        predictions = generate_batch(model, tokenizer, conversations, max_new_tokens=settings.max_new_tokens,
                                     batch_size=settings.batch_size, progress=bar.update)
    records = [task_item(item.messages, item.reference, item.where) for item in items]
    scores, metrics, _ = score_outputs(eval_grader(settings.metric, settings.grader), predictions, records)
    nll = []
    if settings.perplexity:
        examples = [reference_example(c, item.reference, item.where) for c, item in zip(conversations, items)]
        nll = example_nll(model, tokenizer, examples, batch_size=max(1, settings.batch_size // 2))
        metrics["perplexity"] = perplexity(nll)
    return {"metrics": metrics, "predictions": predictions, "scores": scores, "nll": nll}


def compare(file: str | Path, *, adapter: str | Path | None = None, model: str | None = None,
            contenders: tuple[str, ...] = CONTENDERS, prompt: FewShotPrompt | None = None,
            settings: EvalSettings | None = None, cache_root: str | Path | None = None,
            threads: int | None = None, progress: bool = True, log=print) -> Comparison:
    """Score each contender on `file`; base contenders use the adapter's base model (or `model`)."""
    settings = settings or EvalSettings()
    grader = eval_grader(settings.metric, settings.grader)  # a bad metric or spec fails before any model loads
    items = read_task(str(file))
    notes: list[str] = []
    directory = adapter_dir(adapter) if adapter is not None else None
    base_id = read_manifest(directory)["base_model"]["id"] if directory else model
    contenders = _available(contenders, directory, prompt, notes)
    if any(m.get("images") for item in items for m in item.messages) and judges_in(settings.grader):
        notes.append("the held-out items hold images: every contender is shown them; a text-only model judge reads "
                     "each item's text only (its prompt and each grade's reason say so), a vision-language judge "
                     "is shown the images")
    source = resolve_model(base_id or _default_model())
    cache = ResultCache(cache_root or (directory.parent if directory else hone_home()))
    common = {"model": source.sha256 or source.id, "data": file_sha256(file), "settings": asdict(settings)}
    keys = {name: cache_key(**common, contender=name,
                            adapter=adapter_sha256(directory) if name == "tuned" else None,
                            prompt=prompt.describe() if name == "prompted" else None) for name in contenders}
    results = {name: cache.get(keys[name]) for name in contenders}
    missing = [name for name in contenders if results[name] is None]
    for group in (("base", "prompted"), ("tuned",)):
        todo = [name for name in group if name in missing]
        if not todo:
            continue
        loaded, tokenizer = _load(source, directory if group == ("tuned",) else None, threads)
        for name in todo:
            log(f"scoring {LABELS[name]} on {len(items)} items of {file}")
            results[name] = score_contender(loaded, tokenizer, items, settings,
                                            prompt=prompt if name == "prompted" else None, progress=progress)
            cache.put(keys[name], results[name])
        del loaded
    metric = "grader" if settings.grader is not None else settings.metric
    return Comparison(str(file), metric, items, {n: results[n] for n in contenders}, notes, grader.primary)


def compare_contenders(file, *, adapter=None, model: str | None = None, metric: str = "exact_match",
                        contenders=("base", "prompted", "tuned"), instruction: str | None = None, shots: int = 0,
                        train_file: str | None = None, max_new_tokens: int = 256, batch_size: int = 16,
                        perplexity: bool = True, grader=None, threads: int | None = None, progress: bool = True,
                        log=print):
    """Score base zero-shot, base with the best prompt and the tuned adapter on `file` (cached).

    The prompt's worked examples come from `train_file` (default: the adapter's training file).
    `grader` (a spec dict, inline JSON, a JSON/YAML file or a grader config) replaces `metric`.
    """
    if adapter is not None and model is not None:
        raise HoneError("give an adapter or a model, not both", where="--model",
                        hint="an adapter already names its base model in hone.json")
    if train_file is None and adapter is not None and shots:
        train_file = (read_manifest(adapter_dir(adapter)).get("data") or {}).get("train")
    prompt = few_shot_prompt(train_file, shots, instruction)
    if grader is not None:
        grader = dump_spec(load_spec(grader))  # a bad spec fails before any model loads
    settings = EvalSettings(metric, max_new_tokens, batch_size, perplexity, grader)
    return compare(file, adapter=adapter, model=model, contenders=tuple(contenders), prompt=prompt,
                   settings=settings, threads=threads, progress=progress, log=log)


def judges_in(spec) -> bool:
    """Whether a grader spec (a dict, possibly nesting others) has a model judge anywhere in it."""
    if isinstance(spec, dict):
        return spec.get("type") in ("model", "score_model", "label_model") or any(judges_in(v) for v in spec.values())
    return isinstance(spec, list) and any(judges_in(v) for v in spec)


def _available(contenders, directory, prompt, notes: list[str]) -> tuple[str, ...]:
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        raise ConfigError(f"unknown contender {unknown[0]!r}", where="contenders", hint=f"one of {', '.join(CONTENDERS)}")
    kept = []
    for name in contenders:
        if name == "tuned" and directory is None:
            notes.append("tuned: skipped (no adapter given)")
        elif name == "prompted" and prompt is None:
            notes.append("prompted: skipped (no instruction and no few-shot examples; set eval.instruction or "
                         "eval.shots with a training file)")
        else:
            kept.append(name)
    return tuple(kept)


def _load(source, directory, threads):
    if directory is not None:
        return load_for_inference(adapter=directory, threads=threads)
    return load_for_inference(model=source.id, threads=threads)


def _default_model() -> str:
    return DEFAULT_MODEL


def _cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key == "perplexity":
        return f"{value:.2f}"
    return f"{value:.1%}" if isinstance(value, float) else str(value)
