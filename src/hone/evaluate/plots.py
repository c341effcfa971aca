"""PNG plots for reports (matplotlib, Agg backend): each function returns the PNG's bytes."""

from __future__ import annotations

import io


def _figure(width: float = 7.0, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def loss_curves(series: dict[str, list[dict]], title: str = "loss") -> bytes:
    """Train loss (thin) and validation loss (markers) per step, one colour per run; a dotted line
    marks each run's best evaluation. `series` maps a label to its metrics.jsonl records."""
    plt, fig, ax = _figure()
    for n, (label, records) in enumerate(series.items()):
        color = f"C{n}"
        train = [(r["step"], r["loss"]) for r in records if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
        if train:
            ax.plot(*zip(*train), color=color, alpha=0.6, linewidth=1, label=f"{label} train")
        if val:
            ax.plot(*zip(*val), color=color, marker="o", linewidth=2, label=f"{label} validation")
        best = [r["step"] for r in records if r.get("best")]
        if best and val:
            ax.axvline(best[-1], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per target token)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def metric_curves(records: list[dict], keys: list[str], title: str) -> bytes:
    """One line per metric key over the steps that record it (training-health figures of a run)."""
    plt, fig, ax = _figure()
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
        if points:
            ax.plot(*zip(*points), marker=".", linewidth=1, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(plt, fig)


def grouped_bars(groups: dict[str, dict[str, float]], title: str, ylabel: str = "") -> bytes:
    """One cluster of bars per metric key, one bar per group (contender or run)."""
    import numpy as np

    plt, fig, ax = _figure()
    keys = list(dict.fromkeys(k for values in groups.values() for k in values))
    width = 0.8 / max(len(groups), 1)
    for n, (label, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(keys)) + n * width, [values.get(k, 0.0) for k in keys], width, label=label)
    ax.set_xticks(np.arange(len(keys)) + width * (len(groups) - 1) / 2, keys, fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(plt, fig)


def deltas_with_intervals(rows: dict[str, dict]) -> bytes:
    """Forgetting: each part's delta with its 95 % interval; red where the gate failed."""
    plt, fig, ax = _figure(height=3.0)
    names = list(rows)
    deltas = [rows[p]["delta"] for p in names]
    errors = [[rows[p]["delta"] - rows[p]["ci_low"] for p in names], [rows[p]["ci_high"] - rows[p]["delta"] for p in names]]
    colors = ["tab:red" if rows[p]["failed"] else "tab:blue" for p in names]
    ax.barh(names, deltas, xerr=errors, color=colors, capsize=4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("tuned - base (accuracy points; relative change for perplexity)")
    ax.set_title("forgetting suite: deltas with 95% bootstrap intervals")
    ax.grid(axis="x", alpha=0.3)
    return _png(plt, fig)
