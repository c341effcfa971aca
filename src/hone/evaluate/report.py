"""`hone report RUN`: one self-contained HTML page (plots embedded, also written beside it as PNG).

Sections: status, loss curves, training health (RL runs: reward, its spread, entropy, KL, clipping), the
three-contender metric table, the forgetting table, and the
per-example diffs (prompt, expected, base output, tuned output, score) with the biggest wins and
losses first. Evaluations come from the cache, so a second report of the same run is instant.

A held-out file with images (a vision-language run) shows each item's pictures as small thumbnails
embedded in the page, in the same row as the base and tuned answers: in the wins and losses, and in a
table of every held-out example.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from hone.config.load import load_config
from hone.data.images import load_image
from hone.data.record_errors import RecordError
from hone.evaluate import plots
from hone.evaluate.compare import LABELS, Comparison, compare_contenders
from hone.models.artifact import adapter_dir, read_manifest
from hone.train.metrics import MetricsLog

DIFF_ROWS = 10
IMAGE_ROWS = 100  # held-out examples with images shown in full
THUMBNAIL = 96  # pixels, the longest side of an embedded image
HEALTH_METRICS = ("reward", "reward_std", "zero_std_fraction", "dropped_groups", "entropy", "kl", "clip_fraction")


def write_report(run: str | Path, *, out_dir: str | Path | None = None, comparison: Comparison | dict | None = None,
                 progress: bool = True, log=print) -> Path:
    """Write RUN/report/index.html (+ PNGs); scores the contenders on eval.file first if needed (cached)."""
    run_dir = Path(run)
    directory = adapter_dir(run_dir)
    run_dir = directory.parent
    config = load_config(run_dir / "config.yaml")
    manifest = read_manifest(directory)
    if comparison is None and config.eval.file:
        comparison = run_comparison(config, directory, progress=progress, log=log)
    if isinstance(comparison, Comparison):
        comparison = comparison.to_dict()
    if comparison is not None:
        (run_dir / "evaluation.json").write_text(json.dumps(comparison, indent=2))
    forgetting_path = run_dir / "forgetting.json"
    forgetting = json.loads(forgetting_path.read_text())["table"] if forgetting_path.is_file() else None
    records = MetricsLog(run_dir / "metrics.jsonl").records()
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    page = render_page(run_dir.name, manifest, records, comparison, forgetting, out)
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def run_comparison(config, directory: Path, *, progress: bool = True, log=print) -> Comparison:
    """The three contenders on the run's eval.file with the run's eval settings."""
    return compare_contenders(config.eval.file, adapter=directory, metric=config.eval.metric,
                              grader=config.eval.grader, instruction=config.eval.instruction,
                              shots=config.eval.shots, train_file=config.data.train,
                              max_new_tokens=config.eval.max_new_tokens, batch_size=config.eval.batch_size,
                              perplexity=config.eval.perplexity, progress=progress, log=log)


def render_page(name: str, manifest: dict, records: list[dict], comparison: dict | None,
                forgetting: dict | None, out: Path) -> str:
    status = manifest.get("status", "succeeded")
    parts = [f"<h1>hone run <code>{_e(name)}</code></h1>",
             f'<p id="status" class="{"bad" if "failed" in status else "good"}">status: <b>{_e(status)}</b> · '
             f"base <code>{_e(manifest['base_model']['id'])}</code> · method {_e(manifest['method']['type'])} · "
             f"objective {_e(manifest['objective']['type'])}</p>"]
    warnings = [r["warning"] for r in records if r.get("warning")]
    parts += [f'<p class="warning">warning: {_e(w)}</p>' for w in warnings]
    parts.append('<h2 id="loss-curves">Train and validation loss</h2>')
    parts.append(_image(out, "loss", plots.loss_curves({name: records}, title="train and validation loss")))
    health = [k for k in HEALTH_METRICS if any(k in r for r in records)]
    if "zero_std_fraction" in health:  # a run that samples groups (grpo)
        parts.append('<h2 id="training-health">Training health</h2>')
        parts.append("<p>Per step: mean reward and its within-group std, the fraction of groups with zero "
                     "advantage, the policy's entropy on its replies, the KL to the reference and the clip "
                     "fraction.</p>")
        parts.append(_image(out, "health", plots.metric_curves(records, health, title="training health")))
    if comparison:
        parts += _contender_section(comparison, out)
        parts += _diff_section(comparison)
    if forgetting:
        parts.append('<h2 id="forgetting">Forgetting suite</h2>')
        parts.append("<p>Deltas are tuned − base: accuracy points for question parts, the relative change of "
                     "perplexity for general_text (a rise is a drop in ability). Intervals: 95 % paired bootstrap.</p>")
        parts.append(_forgetting_table(forgetting))
        parts.append(_image(out, "forgetting", plots.deltas_with_intervals(forgetting["parts"])))
    return PAGE.format(title=_e(f"hone report: {name}"), body="\n".join(parts))


def _contender_section(comparison: dict, out: Path) -> list[str]:
    results = comparison["results"]
    keys = [k for k in next(iter(results.values()))["metrics"] if k != "n"] if results else []
    rows = "".join(f"<tr><th>{_e(LABELS.get(n, n))}</th>" + "".join(f"<td>{_fmt(k, r['metrics'].get(k))}</td>" for k in keys)
                   + "</tr>" for n, r in results.items())
    table = (f'<table id="contenders"><tr><th>contender</th>{"".join(f"<th>{_e(k)}</th>" for k in keys)}</tr>'
             f"{rows}</table>")
    bars = {LABELS.get(n, n): {k: v for k, v in r["metrics"].items() if k not in ("n", "perplexity")}
            for n, r in results.items()}
    notes = "".join(f"<p class=note>{_e(n)}</p>" for n in comparison.get("notes", []))
    return [f'<h2>Task: {_e(comparison["file"])} ({_e(comparison["metric"])}, '
            f'{len(comparison["items"])} held-out items)</h2>', table, notes,
            _image(out, "contenders", plots.grouped_bars(bars, "held-out task metrics by contender"))]


def example_diffs(comparison: dict) -> list[dict]:
    """Per item: prompt, expected, the best base contender's output, the tuned output, both scores,
    sorted by the tuned model's gain (biggest win first)."""
    results = comparison["results"]
    if "tuned" not in results:
        return []
    base_name = "prompted" if "prompted" in results else "base" if "base" in results else None
    if base_name is None:
        return []
    first = results["tuned"]["scores"][0] if results["tuned"]["scores"] else {}
    key = comparison.get("primary") if comparison.get("primary") in first else next(iter(first), None)
    if key is None:
        return []
    rows = []
    for i, item in enumerate(comparison["items"]):
        base_score, tuned_score = results[base_name]["scores"][i][key], results["tuned"]["scores"][i][key]
        rows.append({"prompt": item["messages"][-1]["content"] if item["messages"] else "", "expected": item["reference"],
                     "images": [url for m in item["messages"] for url in m.get("images", [])], "index": i,
                     "base": results[base_name]["predictions"][i], "tuned": results["tuned"]["predictions"][i],
                     "base_score": base_score, "tuned_score": tuned_score, "delta": tuned_score - base_score,
                     "key": key, "base_name": base_name})
    return sorted(rows, key=lambda r: -r["delta"])


def _diff_row(row: dict, images: bool) -> str:
    """One example's row: its images (when the file has any), prompt, expected, both outputs and scores."""
    pictures = f"<td class=images>{''.join(_thumbnail(url) for url in row['images'])}</td>" if images else ""
    return (f"<tr class=diff>{pictures}<td>{_e(row['prompt'])}</td><td><code>{_e(row['expected'])}</code></td>"
            f"<td class=base><code>{_e(row['base'])}</code></td><td class=tuned><code>{_e(row['tuned'])}</code></td>"
            f"<td>{row['base_score']:.2f} → {row['tuned_score']:.2f} ({row['delta']:+.2f})</td></tr>")


def _diff_table(ident: str, rows: list[dict], label: str, images: bool) -> str:
    head = ("<th>image</th>" if images else "") + (f"<th>prompt</th><th>expected</th><th>{_e(label)} output</th>"
                                                   "<th>tuned output</th><th>score</th>")
    return f'<table id="{ident}"><tr>{head}</tr>{"".join(_diff_row(r, images) for r in rows)}</table>'


def _thumbnail(url: str) -> str:
    """An image of the held-out file as a small PNG embedded in the page (or why it cannot be shown)."""
    try:
        image = load_image(url, field="image")
    except RecordError as error:
        return f"<span class=missing>image not shown: {_e(error.message)}</span>"
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img class="thumb" alt="held-out image" src="data:image/png;base64,{data}">'


def _diff_section(comparison: dict) -> list[str]:
    rows = example_diffs(comparison)
    if not rows:
        return []
    wins = [r for r in rows if r["delta"] > 0][:DIFF_ROWS]
    losses = sorted((r for r in rows if r["delta"] < 0), key=lambda r: r["delta"])[:DIFF_ROWS]
    same = sum(1 for r in rows if r["delta"] == 0)
    label = LABELS[rows[0]["base_name"]]
    out = [f'<h2>Per-example diffs ({_e(rows[0]["key"])}: {_e(label)} → tuned)</h2>',
           f"<p>{sum(r['delta'] > 0 for r in rows)} better, {sum(r['delta'] < 0 for r in rows)} worse, "
           f"{same} unchanged.</p>"]
    images = any(r["images"] for r in rows)
    for title, ident, chosen in (("Biggest wins", "wins", wins), ("Biggest losses", "losses", losses)):
        out.append(f"<h3>{title}</h3>" + _diff_table(ident, chosen, label, images) + ("" if chosen else "<p>none</p>"))
    if images:
        shown = sorted(rows, key=lambda r: r["index"])
        out.append(f'<h3>Every held-out example with its images</h3><p>{min(len(rows), IMAGE_ROWS)} of {len(rows)}, '
                   "in file order.</p>" + _diff_table("examples", shown[:IMAGE_ROWS], label, images))
    return out


def _forgetting_table(table: dict) -> str:
    rows = []
    for part, r in table["parts"].items():
        value = (lambda v: f"{v:.2f}") if r["unit"] == "perplexity" else (lambda v: f"{v:.1%}")
        gate = "FAIL" if r["failed"] else ("pass" if r["max_drop"] is not None else "—")
        limit = "—" if r["max_drop"] is None else f"{r['max_drop']:.1%}"
        rows.append(f"<tr><th>{_e(part)}</th><td>{r['unit']}</td><td>{value(r['base'])}</td><td>{value(r['tuned'])}</td>"
                    f"<td>{r['delta']:+.1%}</td><td>[{r['ci_low']:+.1%}, {r['ci_high']:+.1%}]</td>"
                    f"<td>{limit}</td>"
                    f'<td class="{"bad" if r["failed"] else ""}">{gate}</td></tr>')
    return ('<table id="forgetting-table"><tr><th>part</th><th>unit</th><th>base</th><th>tuned</th><th>delta</th>'
            f"<th>95% CI</th><th>max drop</th><th>gate</th></tr>{''.join(rows)}</table>")


def _image(out: Path, name: str, png: bytes) -> str:
    (out / f"{name}.png").write_bytes(png)
    data = base64.b64encode(png).decode()
    return f'<img id="plot-{name}" class="plot" alt="{name} plot" src="data:image/png;base64,{data}">'


def _fmt(key: str, value) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if key == "perplexity" else f"{value:.1%}" if isinstance(value, float) else _e(str(value))


def _e(text) -> str:
    return html.escape(str(text))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
td code {{ white-space: pre-wrap; word-break: break-word; }} .bad {{ color: #b00; }} .good {{ color: #070; }}
.warning {{ background: #fff4d6; padding: 6px; }} img.plot {{ max-width: 100%; display: block; margin: 1em 0; }}
img.thumb {{ display: block; margin: 2px; border: 1px solid #ddd; image-rendering: pixelated; min-width: 64px; }}
</style></head><body>
{body}
</body></html>
"""
