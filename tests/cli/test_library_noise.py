"""The ML libraries' load-time notices that are not the user's business stay off stderr; their other
log lines and warnings still show."""

import os
import subprocess
import sys
from pathlib import Path

from hone.library_noise import NOISY_LOG_LINES

SRC = str(Path(__file__).resolve().parents[2] / "src")
NOISE = [fragment for _, fragment in NOISY_LOG_LINES] + ["publisher trust", "is_gradient_checkpointing"]


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_tiny_training_run_through_the_python_api_prints_no_library_noise(tmp_path, tiny_model_dir):
    from hone.examples import pizza

    train_file, _ = pizza.write_dataset(tmp_path / "data", train=8, heldout=2)
    done = _python(
        "import hone, logging, warnings\n"
        f"hone.train(None, ['model={tiny_model_dir}', 'data.train={train_file}', 'train.max_steps=1', "
        f"'output_dir={tmp_path}', 'train.threads=1', 'method=qlora'], progress=False, log=lambda *a: None)\n"
        "logging.getLogger('torchao').warning('a torchao warning the user should see')\n"
        "warnings.warn('another FutureWarning', FutureWarning)\n", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [line for line in done.stderr.splitlines() if any(part in line for part in NOISE)], done.stderr
    assert "a torchao warning the user should see" in done.stderr and "another FutureWarning" in done.stderr


def test_hone_help_prints_nothing_on_stderr(tmp_path):
    done = _python("from hone.cli import main; main(['--help'])", tmp_path)
    assert done.stderr == "" and "usage: hone" in done.stdout
