"""`hone demo`: does fine-tuning change behaviour measurably? Pizza orders -> JSON, before and after.

Fine-tunes LoRA on 450 generated orders, then scores three contenders on the same 100 held-out
orders with `hone.evaluate.compare`: the base model as-is, the base model with the best prompt we
could write (instructions, the schema, two worked examples), and the tuned model; runs the
forgetting suite; prints the table and two sample outputs, and writes the HTML report.

`hone demo --task shapes` is the vision demo: it builds a small vision-language model
(`hone.examples.shapes.build_demo_vlm`), trains it to count the shapes in 400 generated pictures and
scores the untrained and the tuned model on 100 held-out pictures with the task's grader.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hone.api import train
from hone.config.load import load_config
from hone.evaluate.compare import EvalSettings, FewShotPrompt, compare, compare_contenders
from hone.evaluate.report import write_report
from hone.errors import ConfigError
from hone.examples import pizza, shapes
from hone.models.load import resolve_model

COLUMNS = ("json_valid", "field_accuracy", "exact_match")
ROW_NAMES = {"base": "base, task prompt only", "prompted": "base, best prompt + 2 examples", "tuned": "LoRA-tuned"}


def run_demo(output_dir: str = "runs", overrides: list[str] | None = None, *, progress: bool = True) -> dict:
    started = time.perf_counter()
    config = load_config(None, [f"output_dir={output_dir}", *(overrides or [])], preset="demo")
    run_dir = Path(config.output_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo is reproducible: start afresh each time
    train_path, heldout_path = pizza.write_dataset(run_dir / "data")
    config = load_config(config, {"data.train": str(train_path), "eval.file": str(heldout_path)})

    print(f"[1/3] fine-tuning LoRA on {train_path}, then scoring the tuned model", flush=True)
    result = train(config, progress=progress)
    print(f"[2/3] scoring the base model {config.model} zero-shot and with the best prompt", flush=True)
    settings = EvalSettings(config.eval.metric, config.eval.max_new_tokens, config.eval.batch_size,
                            config.eval.perplexity)
    comparison = compare(heldout_path, adapter=result.adapter_dir, prompt=pizza_prompt(), settings=settings,
                         progress=progress)  # the tuned model's scores come from train's cached evaluation
    print("[3/3] writing the report", flush=True)
    report = write_report(run_dir, comparison=comparison, progress=progress)

    rows = {ROW_NAMES[name]: r["metrics"] for name, r in comparison.results.items()}
    results = comparison.results
    summary = write_summary(run_dir, rows, result, report, started,
                            _samples(comparison.items, results["prompted"]["predictions"], results["tuned"]["predictions"]))
    print_outcome(render_table(rows), [f"order:     {s['order']}\nexpected:  {s['expected']}\n"
                                       f"prompted:  {s['prompted_base']}\ntuned:     {s['tuned']}"
                                       for s in summary["samples"]],
                  f"adapter: {result.adapter_dir}   report: {report}", result.status, summary["minutes"])
    return summary


def print_outcome(table: str, samples: list[str], files: str, status: str, minutes: float) -> None:
    """A demo's closing lines: its table, its samples, where its files are, and how long it took."""
    print()
    print(table)
    for sample in samples:
        print(f"\n{sample}")
    print(f"\n{files}   run {status}   total time: {minutes:.1f} min")


def write_summary(run_dir: Path, rows: dict, result, report: Path, started: float, samples: list[dict]) -> dict:
    """The demo's figures, run and samples, also written to RUN/demo.json."""
    summary = {"rows": rows, "run_dir": str(run_dir), "train": result.metrics, "status": result.status,
               "report": str(report), "minutes": (time.perf_counter() - started) / 60, "samples": samples}
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary


def pizza_prompt():
    """pizza.prompted_messages as a FewShotPrompt: its instruction and its two hand-written examples."""
    messages = pizza.prompted_messages("")
    shots = [([messages[i]], messages[i + 1]["content"]) for i in range(1, len(messages) - 1, 2)]
    return FewShotPrompt(messages[0]["content"], shots)


def render_table(rows: dict[str, dict]) -> str:
    """A Markdown table of the JSON metrics, one row per contender."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.1%}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def _samples(items, prompted: list[str], tuned: list[str], count: int = 2) -> list[dict]:
    return [{"order": items[i].messages[-1]["content"], "expected": items[i].reference,
             "prompted_base": prompted[i], "tuned": tuned[i]} for i in range(min(count, len(items)))]


def run_shapes_demo(output_dir: str = "runs", overrides: list[str] | None = None, *, language_model: str | None = None,
                    pictures: tuple[int, int] = (400, 100), progress: bool = True) -> dict:
    """Count shapes in pictures, before and after: data and model written into the run, then train and score.

    The demo model is `hone.examples.shapes.build_demo_vlm`'s: `language_model` (a model spec: shipped
    name or directory) puts a pretrained text model behind the new vision tower; by default every weight
    is random and trains here. A `model=DIR` override runs the demo on that vision-language model
    instead (then set the method too, e.g. `method.type=lora`). `pictures`: how many training and
    held-out pictures to generate.
    """
    started = time.perf_counter()
    config = load_config(None, [f"output_dir={output_dir}", *(overrides or [])], preset="shapes-demo")
    given_model = any(setting.partition("=")[0].strip() == "model" for setting in overrides or [])
    if given_model and language_model:
        raise ConfigError("give --language-model or model=, not both", where="--language-model",
                          hint="--language-model builds the demo model around a text model; model= names a whole "
                               "vision-language model")
    run_dir = Path(config.output_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo is reproducible: start afresh each time
    train_path, heldout_path = shapes.write_dataset(run_dir / "data", train=pictures[0], heldout=pictures[1],
                                                    seed=config.train.seed)
    if given_model:
        model_dir = Path(config.model)
        print(f"[1/4] using the model {model_dir}", flush=True)
    else:
        print(f"[1/4] building the demo model in {run_dir / 'model'}", flush=True)
        text_dir = resolve_model(language_model).path if language_model else None
        model_dir = shapes.build_demo_vlm(run_dir / "model", text_dir, seed=config.train.seed)
    config = load_config(config, {"model": str(model_dir), "data.train": str(train_path), "eval.file": str(heldout_path)})

    print(f"[2/4] training on {train_path}, then scoring the tuned model", flush=True)
    result = train(config, progress=progress)
    print("[3/4] scoring the base model, before training", flush=True)
    comparison = compare_contenders(heldout_path, adapter=result.adapter_dir, metric=config.eval.metric,
                                    contenders=("base", "tuned"), max_new_tokens=config.eval.max_new_tokens,
                                    batch_size=config.eval.batch_size, perplexity=config.eval.perplexity,
                                    grader=config.eval.grader, threads=config.train.threads, progress=progress)
    print("[4/4] writing the report", flush=True)
    report = write_report(run_dir, comparison=comparison, progress=progress)

    rows = {name: r["metrics"] for name, r in comparison.results.items()}
    summary = write_summary(run_dir, rows, result, report, started, _shape_samples(comparison))
    print_outcome(comparison.table(), [f"{s['picture']}\n{s['question']}  expected: {s['expected']}   "
                                       f"base: {s['base']!r}   tuned: {s['tuned']!r}" for s in summary["samples"]],
                  f"model: {model_dir}   tuned: {result.adapter_dir}   report: {report}", result.status,
                  summary["minutes"])
    return summary


def _shape_samples(comparison, count: int = 3) -> list[dict]:
    """The first held-out pictures (drawn in letters) with the question, the answer and both contenders' replies."""
    samples = []
    for index, item in enumerate(comparison.items[:count]):
        question = item.messages[-1]
        samples.append({"picture": shapes.letter_picture(question["images"][0]), "question": question["content"],
                        "expected": item.reference,
                        "base": comparison.results["base"]["predictions"][index],
                        "tuned": comparison.results["tuned"]["predictions"][index]})
    return samples
