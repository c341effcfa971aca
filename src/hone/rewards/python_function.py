"""`python`: a user's function `grade(sample, item) -> float` scores each sample, in a subprocess.

`function` is `package.module:function` (imported from the current directory and sys.path) or
`path/to/file.py:function`. One worker process grades a whole batch, one item at a time over a
pipe, so the import is paid once; each item gets `timeout` seconds. A function that raises, returns
something other than a finite number, hangs past the timeout or kills its process scores 0 with
the reason recorded; after a hang or a crash a fresh worker takes the remaining items. Scores
outside [0, 1] are clipped (the raw value kept in details). Prints from the function go to the
worker's stderr, which is discarded, never into the protocol.

The spec names a function and never carries code (OpenAI's `source` field is refused here). The
fine-tuning service takes `source` from a project's reinforcement job, saves it in the job's run
directory and names that file (`hone.jobs.graders`): a key of the service can run code on its workers.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Literal

from pydantic import Field, field_validator

from hone.rewards.grade import Grade, Grader, GraderBase, bounded, failed

WORKER = r"""
import importlib, importlib.util, json, os, sys, traceback
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the user's prints go to stderr, never into the protocol on fd `out`
target, name = sys.argv[1].rsplit(":", 1)
try:
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location("hone_user_grader", target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    function = getattr(module, name)
except BaseException as exc:
    out.write(json.dumps({"fatal": f"cannot load {sys.argv[1]}: {type(exc).__name__}: {exc}"}) + "\n")
    out.flush()
    sys.exit(0)
out.write(json.dumps({"ready": True}) + "\n")
out.flush()
for line in sys.stdin:
    sample, item = json.loads(line)
    try:
        value = function(sample, item)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reply = {"error": f"returned {type(value).__name__}, expected a number"}
        else:
            reply = {"score": float(value)}
    except BaseException as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        reply = {"error": f"{type(exc).__name__}: {exc} (line {last.lineno} of {os.path.basename(last.filename)})"}
    out.write(json.dumps(reply) + "\n")
    out.flush()
"""


class Config(GraderBase):
    type: Literal["python"] = "python"
    function: str
    """`module:function` or `path/to/file.py:function`, called as function(sample, item) -> float."""
    timeout: float = Field(5.0, gt=0, le=600)
    """Seconds each item may take (also the limit for importing the module)."""
    source: None = Field(None, exclude=True)
    """Refused: OpenAI's inline code. Put the code in a file and name it in `function`."""

    @field_validator("source", mode="before")
    @classmethod
    def _no_inline_code(cls, value):
        if value is not None:
            raise ValueError("hone does not run code inside a spec; save it to a file and set "
                             "function: path/to/file.py:grade")
        return value

    @field_validator("function")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        target, sep, name = value.rpartition(":")
        if not sep or not target or not name.isidentifier():
            raise ValueError(f"{value!r} is not module:function or path/to/file.py:function")
        return value


class PythonGrader(Grader):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.name = config.name or config.type

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        grades: list[Grade] = []
        worker = None
        try:
            for sample, item in zip(samples, items):
                if worker is None:
                    worker, fatal = self._start()
                    if fatal:
                        return grades + [failed(fatal)] * (len(samples) - len(grades))
                grade, alive = self._grade_one(worker, sample, item)
                grades.append(grade)
                if not alive:
                    _stop(worker)
                    worker = None
        finally:
            if worker is not None:
                _stop(worker)
        return grades

    def _start(self):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, self.config.function], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ})
        reply = _read_reply(worker, self.config.timeout)
        if isinstance(reply, str) or "fatal" in reply:
            _stop(worker)
            reason = reply if isinstance(reply, str) else reply["fatal"]
            return None, f"python grader {self.config.function}: {reason}"
        return worker, None

    def _grade_one(self, worker, sample: dict, item: dict) -> tuple[Grade, bool]:
        """The grade of one item and whether the worker can take another."""
        try:
            worker.stdin.write((json.dumps([sample, item]) + "\n").encode())
            worker.stdin.flush()
        except (BrokenPipeError, OSError):
            return failed(f"the grader process exited (code {worker.poll()})"), False
        except (TypeError, ValueError) as exc:
            return failed(f"sample or item is not JSON: {exc}"), True
        reply = _read_reply(worker, self.config.timeout)
        if isinstance(reply, str):
            return failed(reply), False
        if "error" in reply:
            return failed(reply["error"]), True
        return bounded(reply["score"], f"{self.config.function} returned {reply['score']:g}"), True


def _read_reply(worker, timeout: float) -> dict | str:
    """The worker's next JSON line, or a string saying why there is none (timeout, exit)."""
    deadline = time.monotonic() + timeout
    buffer = b""
    fd = worker.stdout.fileno()
    while not buffer.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return f"timed out after {timeout:g} s"
        chunk = os.read(fd, 65536)
        if not chunk:
            try:
                code = worker.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = "unknown"
            return f"the grader process exited (code {code})"
        buffer += chunk
    return json.loads(buffer)


def _stop(worker) -> None:
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in (worker.stdin, worker.stdout):
        try:
            stream.close()
        except OSError:
            pass


def build(config: Config) -> PythonGrader:
    return PythonGrader(config)
