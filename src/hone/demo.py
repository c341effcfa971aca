"""`hone demo`: does fine-tuning change behaviour measurably? Pizza orders -> JSON, before and after.

Fine-tunes LoRA on 450 generated orders, then scores three contenders on the same 100 held-out
orders with `hone.evaluate.compare`: the base model as-is, the base model with the best prompt we
could write (instructions, the schema, two worked examples), and the tuned model; runs the
forgetting suite; prints the table and two sample outputs, and writes the HTML report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hone.api import train
from hone.config.load import load_config
from hone.evaluate.compare import EvalSettings, FewShotPrompt, compare
from hone.evaluate.report import write_report
from hone.examples import pizza

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
    summary = {"rows": rows, "run_dir": str(run_dir), "train": result.metrics, "status": result.status,
               "report": str(report), "minutes": (time.perf_counter() - started) / 60,
               "samples": _samples(comparison.items, results["prompted"]["predictions"],
                                   results["tuned"]["predictions"])}
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    print()
    print(render_table(rows))
    for sample in summary["samples"]:
        print(f"\norder:     {sample['order']}\nexpected:  {sample['expected']}\n"
              f"prompted:  {sample['prompted_base']}\ntuned:     {sample['tuned']}")
    print(f"\nadapter: {result.adapter_dir}   report: {report}   run {result.status}   "
          f"total time: {summary['minutes']:.1f} min")
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
