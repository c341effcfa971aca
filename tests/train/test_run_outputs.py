"""What a run leaves on disk: checkpoints only as asked (`train.save_every`, `train.keep_checkpoints`),
and a closing list of what was written, with sizes."""

import json
import re

from hone.api import train


def _train(tmp_path, tiny_model_dir, pizza_files, *overrides, name="run", resume=None):
    said = []
    base = [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}", f"output_dir={tmp_path}", f"name={name}",
            "train.threads=1", "data.max_length=384", "train.batch_size=4"]
    result = train(None, [] if resume else base + list(overrides), resume=resume,
                   progress=False, log=lambda *a: said.append(" ".join(map(str, a))))
    if resume:  # overrides apply on top of the run's own config.yaml
        said.clear()
        result = train(None, list(overrides), resume=resume, progress=False,
                       log=lambda *a: said.append(" ".join(map(str, a))))
    return result, "\n".join(said)


def test_no_checkpoints_unless_asked_and_the_run_says_what_it_wrote(tmp_path, tiny_model_dir, pizza_files):
    result, said = _train(tmp_path, tiny_model_dir, pizza_files, "train.max_steps=2", "train.eval_every=1")
    assert not (result.run_dir / "checkpoints").exists()  # not even checkpoints/best
    listing = said[said.index(f"wrote {result.run_dir}/"):]
    size = re.search(r"adapter/ +([\d.]+) (KiB|MiB)", listing)
    adapter_bytes = sum(f.stat().st_size for f in result.adapter_dir.rglob("*") if f.is_file())
    unit = 1024 if size.group(2) == "KiB" else 1024**2
    assert abs(float(size.group(1)) * unit - adapter_bytes) <= 0.05 * unit
    assert "config.yaml" in listing and "metrics.jsonl" in listing and "checkpoints/" not in listing


def test_kept_checkpoints_are_the_newest_and_resume_from_them(tmp_path, tiny_model_dir, pizza_files):
    result, said = _train(tmp_path, tiny_model_dir, pizza_files, "train.max_steps=5", "train.save_every=2",
                          "train.keep_checkpoints=2")
    kept = sorted(p.name for p in (result.run_dir / "checkpoints").glob("step-*"))
    assert kept == ["step-4", "step-5"]  # every 2 steps and at the end; step-2 pruned
    assert re.search(r"checkpoints/step-5/ +[\d.]+ KiB", said)
    resumed, said = _train(tmp_path, tiny_model_dir, pizza_files, "train.max_steps=6", resume=result.run_dir)
    assert "resumed from" in said and "step-5" in said
    steps = [r["step"] for r in map(json.loads, open(result.run_dir / "metrics.jsonl")) if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (result.run_dir / "checkpoints").glob("step-*")) == ["step-5", "step-6"]


def test_keep_none_removes_the_checkpoints_when_the_run_ends(tmp_path, tiny_model_dir, pizza_files):
    result, _ = _train(tmp_path, tiny_model_dir, pizza_files, "train.max_steps=3", "train.save_every=1",
                       "train.keep_checkpoints=0")
    steps = [r["step"] for r in map(json.loads, open(result.run_dir / "metrics.jsonl")) if "loss" in r]
    assert steps == [1, 2, 3] and not (result.run_dir / "checkpoints").exists()
