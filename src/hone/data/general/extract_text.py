"""Write general_text.jsonl (the forgetting probe) and replay_text.jsonl (training replay) from Python's docs.

Both are prose paragraphs of `pydoc_data.topics` (the Python Language Reference, PSF licence; see
LICENSE-PSF.txt), split by topic so that replay data never contains a probe passage. Run once with
the Python whose docs should be used: `python src/hone/data/general/extract_text.py`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

PROBE_TOPICS = ("assignment", "booleans", "class", "comparisons", "exceptions", "execmodel", "for", "function",
                "if", "import", "lambda", "naming", "numbers", "try", "while", "with")
MIN_CHARS, MAX_CHARS = 200, 700


def prose_paragraphs(text: str) -> list[str]:
    """Paragraphs that read as English prose: no indented code, no grammar rules, no headings."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or any(line.startswith((" ", "\t", "*", ">>>")) for line in lines):
            continue
        flat = " ".join(line.strip() for line in lines)
        if MIN_CHARS <= len(flat) <= MAX_CHARS and flat.endswith(".") and "::=" not in flat:
            out.append(flat)
    return out


def main() -> None:
    from pydoc_data.topics import topics

    here = Path(__file__).parent
    probe, replay = [], []
    for name in sorted(topics):
        target = probe if name in PROBE_TOPICS else replay
        target.extend({"topic": name, "text": p} for p in prose_paragraphs(topics[name]))
    seen = {r["text"] for r in probe}
    replay = [r for r in replay if r["text"] not in seen and not seen.add(r["text"])]  # topics share paragraphs
    for path, rows, limit in ((here / "general_text.jsonl", probe, 60), (here / "replay_text.jsonl", replay, 200)):
        step = max(1, len(rows) // limit)
        chosen = rows[::step][:limit]
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), encoding="utf-8")
        print(f"{path.name}: {len(chosen)} paragraphs, {sum(len(r['text']) for r in chosen):,} characters")


if __name__ == "__main__":
    main()
