"""`hone compare RUN...`: several runs (methods, hyper-parameters) side by side in one table and plot."""

from __future__ import annotations

import html
from pathlib import Path

from hone.config.load import load_config
from hone.evaluate import plots
from hone.models.artifact import adapter_dir, read_manifest
from hone.train.metrics import MetricsLog

SETTINGS = (("method", lambda c: c.method.type), ("objective", lambda c: c.objective.type),
            ("lr", lambda c: c.train.lr), ("epochs", lambda c: c.train.epochs))
SCALARS = ("steps", "train_loss", "val_loss", "best_step", "status")


def run_rows(run_dirs: list[str | Path]) -> list[dict]:
    """One dict per run: its name, key settings, final losses, eval_* metrics and forgetting deltas."""
    rows = []
    for run in run_dirs:
        directory = adapter_dir(run)
        config = load_config(directory.parent / "config.yaml")
        metrics = read_manifest(directory).get("metrics", {})
        row = {"run": directory.parent.name, **{k: get(config) for k, get in SETTINGS}}
        row.update({k: metrics[k] for k in SCALARS if k in metrics})
        row.update({k: v for k, v in metrics.items() if k.startswith(("eval_", "forgetting_")) and k != "eval_n"})
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def write_comparison(run_dirs: list[str | Path], out: str | Path) -> tuple[str, Path]:
    """Print-ready Markdown and an HTML page (table + loss and metric plots, embedded) at `out`."""
    import base64

    rows = run_rows(run_dirs)
    curves = {row["run"]: MetricsLog(adapter_dir(run).parent / "metrics.jsonl").records()
              for row, run in zip(rows, run_dirs)}
    images = {"loss": plots.loss_curves(curves, title="loss by run")}
    bars = {row["run"]: {k.removeprefix("eval_"): v for k, v in row.items()
                         if k.startswith("eval_") and isinstance(v, float) and k != "eval_perplexity"} for row in rows}
    if any(bars.values()):
        images["metrics"] = plots.grouped_bars(bars, "held-out task metrics by run")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(k)))}</td>" for k in keys) + "</tr>" for row in rows)
    figures = "".join(f'<img id="plot-{name}" class="plot" alt="{name}" style="max-width:100%" '
                      f'src="data:image/png;base64,{base64.b64encode(png).decode()}">' for name, png in images.items())
    for name, png in images.items():
        out.with_name(f"{out.stem}-{name}.png").write_bytes(png)
    out.write_text(f"<!doctype html><html><head><meta charset=utf-8><title>hone compare</title></head><body>"
                   f"<h1>hone compare: {len(rows)} runs</h1><table id=\"runs\" border=1 cellpadding=4>"
                   f"<tr>{head}</tr>{body}</table>{figures}</body></html>", encoding="utf-8")
    return markdown_table(rows), out


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
