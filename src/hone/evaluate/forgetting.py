"""The forgetting suite: has fine-tuning cost the model its general abilities?

Shipped with hone, no network: the perplexity of 60 paragraphs of Python's documentation
(`general/general_text.jsonl`, PSF licence) and 76 general questions whose answers code can check
(`general/questions.jsonl`: arithmetic, facts, instruction following with verifiable constraints).
Base and tuned model are scored on the same items; each part's delta gets a paired bootstrap
confidence interval, and `forgetting.max_drop` turns the deltas into a pass/fail gate.

Drops are measured in each part's own unit: for question parts, accuracy points lost
(0.10 = ten points); for `general_text`, the relative rise in perplexity (0.10 = 10 % higher).
"""

from __future__ import annotations

import math
import re

import numpy as np

from hone.data.formats import Example
from hone.data.shipped import QUESTION_PARTS, load_general_text, load_questions
from hone.evaluate.cache import ResultCache, adapter_sha256, cache_key
from hone.evaluate.perplexity import example_nll
from hone.methods.tuned import load_for_inference
from hone.models.artifact import adapter_dir, read_manifest
from hone.models.generate import generate_batch
from hone.models.load import resolve_model
from hone.paths import hone_home
from hone.rewards.grade import parse_json_output

SUITE_VERSION = 2


# ---- graders: pure functions of the check and the model's answer -------------------------------

def check_answer(check: dict | list[dict], answer: str) -> bool:
    """Whether `answer` passes `check` (a list of checks must all pass)."""
    if isinstance(check, list):
        return all(check_answer(c, answer) for c in check)
    return CHECKS[check["type"]](check, answer.strip())


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'’-]*", text)]


def _first_number(check: dict, answer: str) -> bool:
    """The first number in the answer, skipping the question's own numbers (`ignore`), is the value:
    "2 * 3 = 6" answers "What is 2 * 3?" correctly."""
    ignore = {float(x) for x in check.get("ignore", [])}
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", answer.replace(",", ""))]
    given = [n for n in numbers if n not in ignore]
    return bool(given) and given[0] == float(check["value"])


def _contains(check: dict, answer: str) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(a)}(?![A-Za-z0-9])", answer, re.IGNORECASE)
               for a in check["any"])


def _one_of(check: dict, answer: str) -> bool:
    return answer.strip(" .!\"'").lower() in [o.lower() for o in check["options"]]


def _json_keys(check: dict, answer: str) -> bool:
    value = parse_json_output(answer)
    return isinstance(value, dict) and set(value) == set(check["keys"])


def _lines(check: dict, answer: str) -> bool:
    return len([line for line in answer.splitlines() if line.strip()]) == check["n"]


CHECKS = {
    "number": _first_number,
    "contains": _contains,
    "one_of": _one_of,
    "json_keys": _json_keys,
    "lines": _lines,
    "word_count": lambda c, a: len(_words(a)) == c["n"],
    "max_words": lambda c, a: 0 < len(_words(a)) <= c["n"],
    "min_words": lambda c, a: len(_words(a)) >= c["n"],
    "uppercase": lambda c, a: any(ch.isalpha() for ch in a) and a == a.upper(),
    "lowercase": lambda c, a: any(ch.isalpha() for ch in a) and a == a.lower(),
    "starts_with": lambda c, a: a.lower().startswith(c["prefix"].lower()),
    "ends_with": lambda c, a: a.endswith(c["suffix"]),
    "excludes": lambda c, a: bool(a) and c["text"] not in a,
}


# ---- scoring one model ---------------------------------------------------------------------------

def score_model(model, tokenizer, *, max_new_tokens: int = 48, batch_size: int = 16) -> dict:
    """One model's raw results: per-question pass/fail and answer, per-paragraph (NLL, tokens)."""
    questions = load_questions()
    answers = generate_batch(model, tokenizer, [[{"role": "user", "content": q["prompt"]}] for q in questions],
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    passed = [float(check_answer(q["check"], a)) for q, a in zip(questions, answers)]
    texts = [Example(format="text", text=t, where=f"general_text:{i + 1}") for i, t in enumerate(load_general_text())]
    nll = example_nll(model, tokenizer, texts, max_length=512, batch_size=max(1, batch_size // 2))
    return {"answers": answers, "passed": passed, "nll": nll}


def part_values(raw: dict) -> dict[str, float]:
    """Each part's headline: perplexity for general_text, accuracy for question parts."""
    questions = load_questions()
    values = {"general_text": _ppl(np.array(raw["nll"], dtype=float))}
    for part in QUESTION_PARTS:
        marks = [p for q, p in zip(questions, raw["passed"]) if q["part"] == part]
        values[part] = sum(marks) / len(marks)
    return values


def _ppl(nll: np.ndarray) -> float:
    return math.exp(min(nll[..., 0].sum(-1) / nll[..., 1].sum(-1), 50.0)) if nll.size else float("inf")


# ---- comparing base and tuned -------------------------------------------------------------------

def forgetting_table(base: dict, tuned: dict, max_drop: float | dict | None = None, *,
                     resamples: int = 1000, seed: int = 0) -> dict:
    """Per part: base, tuned, delta (tuned - base; relative for perplexity), its 95 % bootstrap interval,
    the drop, the allowed drop and whether it fails; plus `passed` for the whole gate."""
    questions = load_questions()
    rng = np.random.default_rng(seed)
    rows = {}
    b_nll, t_nll = np.array(base["nll"], dtype=float), np.array(tuned["nll"], dtype=float)
    idx = rng.integers(0, len(b_nll), size=(resamples, len(b_nll)))
    ratio = _ratio(t_nll, b_nll)
    boot = np.array([_ratio(t_nll[i], b_nll[i]) for i in idx])
    rows["general_text"] = _row("perplexity", _ppl(b_nll), _ppl(t_nll), ratio - 1, boot - 1, drop=ratio - 1)
    for part in QUESTION_PARTS:
        pick = [i for i, q in enumerate(questions) if q["part"] == part]
        b = np.array([base["passed"][i] for i in pick])
        t = np.array([tuned["passed"][i] for i in pick])
        resample = rng.integers(0, len(pick), size=(resamples, len(pick)))
        deltas = (t[resample] - b[resample]).mean(1)
        rows[part] = _row("accuracy", b.mean(), t.mean(), t.mean() - b.mean(), deltas, drop=b.mean() - t.mean())
    for part, row in rows.items():
        limit = max_drop.get(part) if isinstance(max_drop, dict) else max_drop
        row["max_drop"] = limit
        row["failed"] = limit is not None and row["drop"] > limit + 1e-12
    return {"parts": rows, "passed": not any(r["failed"] for r in rows.values()),
            "failed_parts": [p for p, r in rows.items() if r["failed"]]}


def _ratio(tuned_nll: np.ndarray, base_nll: np.ndarray) -> float:
    return _ppl(tuned_nll) / _ppl(base_nll)


def _row(unit: str, base: float, tuned: float, delta: float, boot: np.ndarray, *, drop: float) -> dict:
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"unit": unit, "base": float(base), "tuned": float(tuned), "delta": float(delta),
            "ci_low": float(low), "ci_high": float(high), "drop": float(max(drop, 0.0))}


def render_table(table: dict) -> str:
    """Markdown: one row per part with its delta, 95 % interval and gate."""
    lines = ["| part | unit | base | tuned | delta | 95% CI | max drop | gate |", "|---|---|---:|---:|---:|---|---:|---|"]
    for part, r in table["parts"].items():
        fmt = (lambda v: f"{v:.2f}") if r["unit"] == "perplexity" else (lambda v: f"{v:.1%}")
        gate = "FAIL" if r["failed"] else ("ok" if r["max_drop"] is not None else "—")
        limit = "—" if r["max_drop"] is None else f"{r['max_drop']:.1%}"
        lines.append(f"| {part} | {r['unit']} | {fmt(r['base'])} | {fmt(r['tuned'])} | {r['delta']:+.1%} | "
                     f"[{r['ci_low']:+.1%}, {r['ci_high']:+.1%}] | {limit} | {gate} |")
    return "\n".join(lines)


def check_forgetting(adapter, *, max_drop: float | dict | None = None, max_new_tokens: int = 48,
                     batch_size: int = 16, resamples: int = 1000, threads: int | None = None,
                     progress_log=print) -> dict:
    """Score the adapter's base and the tuned model on the suite (cached) and compare them.

    The base's results are cached under HONE_HOME (shared by every run on that base), the tuned
    model's in the run directory. Returns {"table", "base", "tuned"}.
    """
    directory = adapter_dir(adapter)
    source = resolve_model(read_manifest(directory)["base_model"]["id"])
    common = {"kind": "forgetting", "suite": SUITE_VERSION, "model": source.sha256 or source.id,
              "max_new_tokens": max_new_tokens}
    plan = {"base": (ResultCache(hone_home()), cache_key(**common), {"model": source.id}),
            "tuned": (ResultCache(directory.parent), cache_key(**common, adapter=adapter_sha256(directory)),
                      {"adapter": directory})}
    raw = {}
    for name, (cache, key, load_args) in plan.items():
        raw[name] = cache.get(key)
        if raw[name] is None:
            progress_log(f"forgetting suite: scoring the {name} model")
            model, tokenizer = load_for_inference(**load_args, threads=threads)
            raw[name] = score_model(model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size)
            cache.put(key, raw[name])
            del model
    table = forgetting_table(raw["base"], raw["tuned"], max_drop, resamples=resamples)
    return {"table": table, **raw}
