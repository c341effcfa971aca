"""`hone demo`: does fine-tuning change behaviour measurably? Pizza orders -> JSON, before and after.

Scores the base model as-is and with the best prompt we could write (instructions, the schema, two
worked examples), fine-tunes LoRA on 450 generated orders, scores the tuned model on the same 100
held-out orders, and prints the table and two sample outputs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from hone.config.load import load_config
from hone.examples import pizza

COLUMNS = ("json_valid", "field_accuracy", "exact_match")


def run_demo(output_dir: str = "runs", overrides: list[str] | None = None, *, progress: bool = True) -> dict:
    from hone.api import train
    from hone.evaluate.task import evaluate_task, read_task
    from hone.models.load import load_model

    started = time.perf_counter()
    config = load_config(None, [f"output_dir={output_dir}", *(overrides or [])], preset="demo")
    run_dir = Path(config.output_dir) / config.name
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo is reproducible: start afresh each time
    train_path, heldout_path = pizza.write_dataset(run_dir / "data")
    config = load_config(config, {"data.train": str(train_path), "eval.file": str(heldout_path)})
    items = read_task(str(heldout_path))
    eval_args = dict(max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size,
                     progress=progress)

    print(f"[1/2] scoring the base model {config.model} on {len(items)} held-out orders", flush=True)
    base, tokenizer, _ = load_model(config.model)
    plain = evaluate_task(base, tokenizer, items, "json", **eval_args)
    prompted = evaluate_task(base, tokenizer, items, "json", prompt=_prompted, **eval_args)
    del base

    print(f"[2/2] fine-tuning LoRA on {train_path}, then scoring the tuned model", flush=True)
    result = train(config, progress=progress)
    tuned = result.evaluation

    rows = {"base, task prompt only": plain.metrics, "base, best prompt + 2 examples": prompted.metrics,
            "LoRA-tuned": tuned.metrics}
    summary = {"rows": rows, "run_dir": str(run_dir), "train": result.metrics,
               "minutes": (time.perf_counter() - started) / 60,
               "samples": _samples(items, prompted.predictions, tuned.predictions)}
    (run_dir / "demo.json").write_text(json.dumps(summary, indent=2))
    print()
    print(render_table(rows))
    for sample in summary["samples"]:
        print(f"\norder:     {sample['order']}\nexpected:  {sample['expected']}\n"
              f"prompted:  {sample['prompted_base']}\ntuned:     {sample['tuned']}")
    print(f"\nadapter: {result.adapter_dir}   total time: {summary['minutes']:.1f} min")
    return summary


def render_table(rows: dict[str, dict]) -> str:
    """A Markdown table of the JSON metrics, one row per contender."""
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.1%}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def _prompted(messages: list[dict]) -> list[dict]:
    return pizza.prompted_messages(messages[-1]["content"])


def _samples(items, prompted: list[str], tuned: list[str], count: int = 2) -> list[dict]:
    return [{"order": items[i].messages[-1]["content"], "expected": items[i].reference,
             "prompted_base": prompted[i], "tuned": tuned[i]} for i in range(min(count, len(items)))]
