"""`python`: a user's function `grade(sample, item) -> float` scores each sample, in a subprocess.

`function` is `package.module:function` (imported from the current directory and sys.path) or
`path/to/file.py:function`. One worker process grades a whole batch, one item at a time over a
pipe, so the import is paid once; each item gets `timeout` seconds. A function that raises, returns
something other than a finite number, hangs past the timeout or kills its process scores 0 with
the reason recorded; after a hang or a crash a fresh worker takes the remaining items (the whole
process group is killed). Scores outside [0, 1] are clipped (the raw value kept in details). Prints
from the function go to the worker's stderr, which is discarded, never into the protocol.

By default the function runs as the user running hone, with their environment and packages: it is
their own code on their own machine. `sandbox: true` runs it in hone's sandbox instead
(`hone.rewards.sandbox`): only the Python standard library, no network, no file of the host, an
empty environment and kernel limits; the file's source is sent to the sandbox over stdin, so
`function` must then name a .py file. The fine-tuning service runs every python grader that way.

The spec names a function and never carries code (OpenAI's `source` field is refused here). The
fine-tuning service takes `source` from a project's reinforcement job, saves it in the job's run
directory and names that file (`hone.jobs.graders`), with `sandbox: true`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hone.rewards.grade import Grade, Grader, GraderBase, bounded, failed
from hone.rewards.sandbox import SandboxLimits, bootstrap_settings, describe_exit, sandbox_command

WORKER = r"""
import importlib, importlib.util, json, os, sys, traceback
settings = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
if settings.get("uid") is not None:  # root in the sandbox: become nobody before any grader code runs
    os.setgroups([])
    os.setgid(settings["uid"])
    os.setuid(settings["uid"])
if settings.get("processes"):  # counted in the sandbox's user namespace, or as nobody
    import resource
    resource.setrlimit(resource.RLIMIT_NPROC, (settings["processes"], settings["processes"]))
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # the user's prints go to stderr, never into the protocol on fd `out`
target, name = sys.argv[1].rsplit(":", 1)
try:
    if target == "-":  # sandboxed: the file's source is the first line on stdin
        given = json.loads(sys.stdin.readline())
        module = type(sys)("hone_user_grader")
        module.__file__ = given["filename"]
        exec(compile(given["source"], given["filename"], "exec"), module.__dict__)
    elif target.endswith(".py"):
        spec = importlib.util.spec_from_file_location("hone_user_grader", target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    function = getattr(module, name)
except BaseException as exc:
    out.write(json.dumps({"fatal": f"cannot load it: {type(exc).__name__}: {exc}"}) + "\n")
    out.flush()
    sys.exit(0)
out.write(json.dumps({"ready": True}) + "\n")
out.flush()
worker = os.getpid()
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
    if os.getpid() != worker:
        os._exit(0)  # a process the function forked came back here: only the worker replies
    out.write(json.dumps(reply) + "\n")
    out.flush()
"""


class Config(GraderBase):
    type: Literal["python"] = "python"
    function: str
    """`module:function` or `path/to/file.py:function`, called as function(sample, item) -> float."""
    timeout: float = Field(5.0, gt=0, le=600)
    """Seconds each item may take (also the limit for importing the module)."""
    sandbox: bool = Field(False, description=(
        "Run the function in hone's sandbox (bubblewrap: standard library only, no network, no host files, "
        "an empty environment, CPU/memory/process/file-size limits); `function` must name a .py file. "
        "The fine-tuning service always sets it."))
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

    @model_validator(mode="after")
    def _sandbox_reads_a_file(self):
        if self.sandbox and not self.function.rpartition(":")[0].endswith(".py"):
            raise ValueError(f"a sandboxed grader cannot import modules of the host; name a file "
                             f"(path/to/file.py:function), not {self.function!r}")
        return self


class PythonGrader(Grader):
    """Grades in a worker process; `limits` bound a sandboxed one (the operator's, never the spec's)."""

    def __init__(self, config: Config, limits: SandboxLimits | None = None) -> None:
        self.config = config
        self.name = config.name or config.type
        self.limits = limits or SandboxLimits()
        self._exit_reason = lambda code: f"the grader process exited (code {code})"  # a sandbox's names its limits

    def grade(self, samples: list[dict], items: list[dict]) -> list[Grade]:
        grades: list[Grade] = []
        worker = None
        try:
            for sample, item in zip(samples, items):
                if worker is None:
                    worker, fatal = self._start(len(samples) - len(grades))
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

    def _start(self, items: int):
        """A worker process ready to grade (None and the reason when it cannot load the function)."""
        target, name = self.config.function.rsplit(":", 1)
        if self.config.sandbox:
            try:
                source = Path(target).read_text(encoding="utf-8")
            except OSError as exc:
                return None, f"python grader {self.config.function}: cannot read {target}: {exc.strerror}"
            cpu = self.limits.cpu_for(self.config.timeout, items)
            argv = sandbox_command(["-c", WORKER, f"-:{name}", json.dumps(bootstrap_settings(self.limits))],
                                   self.limits, cpu)
            worker = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      env={}, start_new_session=True)
            self._exit_reason = lambda code: describe_exit(code, self.limits, cpu)
            try:
                _send(worker, {"source": source, "filename": Path(target).name})
            except OSError:
                pass  # the sandbox did not start: reading its reply says how it ended
        else:
            worker = subprocess.Popen([sys.executable, "-c", WORKER, self.config.function], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ},
                                      start_new_session=True)
        reply = _read_reply(worker, self.config.timeout, self._exit_reason)
        if isinstance(reply, str) or "fatal" in reply:
            _stop(worker)
            reason = reply if isinstance(reply, str) else reply["fatal"]
            return None, f"python grader {self.config.function}: {reason}"
        return worker, None

    def _grade_one(self, worker, sample: dict, item: dict) -> tuple[Grade, bool]:
        """The grade of one item and whether the worker can take another."""
        try:
            _send(worker, [sample, item])
        except (BrokenPipeError, OSError):
            return failed(self._exit_reason(worker.poll())), False
        except (TypeError, ValueError) as exc:
            return failed(f"sample or item is not JSON: {exc}"), True
        reply = _read_reply(worker, self.config.timeout, self._exit_reason)
        if isinstance(reply, str):
            return failed(reply), False
        if "error" in reply:
            return failed(str(reply["error"])), True
        if not isinstance(reply.get("score"), float):
            return failed("the grader process wrote something other than its reply"), False
        return bounded(reply["score"], f"{self.config.function} returned {reply['score']:g}"), True


def _send(worker, message) -> None:
    worker.stdin.write((json.dumps(message) + "\n").encode())
    worker.stdin.flush()


def _read_reply(worker, timeout: float, exit_reason) -> dict | str:
    """The worker's next JSON line, or a string saying why there is none (timeout, `exit_reason(code)`)."""
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
                code = None
            return exit_reason(code)
        buffer += chunk
    try:
        reply = json.loads(buffer)
    except ValueError:
        return "the grader process wrote something other than its reply"
    return reply if isinstance(reply, dict) else "the grader process wrote something other than its reply"


def _stop(worker) -> None:
    """Kill the worker's whole process group (a sandbox's pid namespace goes with it)."""
    if worker.poll() is None:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait()
    for stream in (worker.stdin, worker.stdout):
        try:
            stream.close()
        except OSError:
            pass


def build(config: Config) -> PythonGrader:
    return PythonGrader(config)
