"""A run killed with SIGKILL resumes from its last checkpoint and ends exactly like an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hone.train.checkpoint import latest_checkpoint


def _losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, open(run_dir / "metrics.jsonl")) if "loss" in r]


def _cmd(*args):
    return [sys.executable, "-m", "hone", "train", *args]


def test_resume_after_kill_matches_uninterrupted(tmp_path, tiny_model_dir, pizza_files):
    common = [f"model={tiny_model_dir}", f"data.train={pizza_files[0]}", f"output_dir={tmp_path}",
              "train.max_steps=40", "train.save_every=5", "train.batch_size=2", "train.lr=5e-3",
              "train.threads=1", "data.max_length=384", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(_cmd(*common, "name=whole"), check=True, capture_output=True, env=env)

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(*common, "name=killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is not None and ckpt.name == "step-10":
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail("the run ended before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((latest_checkpoint(run_dir) / "state.json").read_text())["step"]
    assert 10 <= killed_at < 40

    out = subprocess.run(_cmd("--resume", str(run_dir), "--no-progress"), check=True, capture_output=True,
                         text=True, env=env)
    assert f"resumed from" in out.stdout
    whole, resumed = _losses(tmp_path / "whole"), _losses(run_dir)
    assert [s for s, _ in resumed] == list(range(1, 41))
    for (step, a), (_, b) in zip(whole, resumed):
        assert a == pytest.approx(b, abs=1e-6), step
