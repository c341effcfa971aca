"""`hone worker`: claim queued fine-tuning jobs and run each in a `hone train` subprocess.

While the subprocess runs, the worker renews its lease on the job, turns new lines of the run's
`metrics.jsonl` into job events, records each new checkpoint with its metrics, and obeys the job's
status as the API changed it: `cancelled` terminates the subprocess, `paused` interrupts it (hone
saves a checkpoint on SIGINT) so a later resume continues from there. A worker that dies (even by
kill -9) stops renewing its lease; its subprocess dies with it (Linux parent-death signal), and the
next worker takes the job over and resumes it from its last checkpoint with `hone train --resume`.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import yaml
from sqlalchemy.exc import OperationalError

from hone.errors import ConflictError, RequestError
from hone.jobs.graders import check_python_graders
from hone.jobs.service import ServiceSettings, fine_tuned_model_name, transition
from hone.jobs.store import Store, new_id

EXIT_CODES = {2: "invalid_config", 3: "invalid_training_file", 4: "invalid_model", 7: "grader_error"}
GRADER_EVENTS = 20  # distinct grader errors a job lists as events; the metrics count every one
MESSAGE_CHARS = 500


class Worker:
    """Runs jobs one at a time. `poll_seconds`: how often it looks for work and for progress."""

    def __init__(self, store: Store, settings: ServiceSettings, *, worker_id: str | None = None,
                 poll_seconds: float = 1.0, log=print) -> None:
        self.store, self.settings, self.poll, self.log = store, settings, poll_seconds, log
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[2:10]}"
        self._stop = False

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Claim and run jobs until stopped (SIGTERM/SIGINT), `max_jobs` ran, or idle with `exit_when_idle`."""
        done = 0
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request_stop)
        while not self._stop and (max_jobs is None or done < max_jobs):
            try:
                job = self.store.claim_job(self.id, self.settings.lease_seconds, self.settings.max_running_jobs)
            except OperationalError as exc:  # e.g. SQLite busy: a worker outlives a database hiccup
                print(f"worker {self.id}: the store is not answering ({exc.orig}); retrying", file=sys.stderr,
                      flush=True)
                time.sleep(self.poll)
                continue
            if job is None:
                if exit_when_idle:
                    break
                time.sleep(self.poll)
                continue
            self.run_job(job)
            done += 1
        return done

    def _request_stop(self, *_):
        self._stop = True

    def run_job(self, job: dict) -> str:
        """Run one claimed job to its end (or until it is cancelled, paused or taken away); its final status."""
        run_dir = Path(job["run_dir"])
        try:  # checked again here: this worker may not run python graders, whatever the API accepted
            check_python_graders(job["config"], run_dir, allowed=self.settings.allow_python_graders)
        except RequestError as refused:
            return self._fail(job, {"code": refused.code or "invalid_grader", "message": refused.what, "param": None})
        run_dir.mkdir(parents=True, exist_ok=True)
        resume = (run_dir / "config.yaml").is_file()
        step = _checkpoint_step(run_dir)
        if job.get("previous_worker"):
            self.store.add_event(job["id"], f"Worker {job['previous_worker']} stopped renewing its lease; "
                                 f"worker {self.id} resumes the job from step {step or 0}", level="warn")
        elif resume:
            self.store.add_event(job["id"], f"Resuming from step {step or 0}")
        else:
            self.store.add_event(job["id"], "Fine-tuning job started")
        if resume:
            command = ["train", "--resume", str(run_dir)]
        else:
            (run_dir / "job.yaml").write_text(yaml.safe_dump(job["config"], sort_keys=False))
            command = ["train", str(run_dir / "job.yaml")]
        log_path = run_dir / "worker.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hone", *command, "--no-progress"], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    preexec_fn=die_with_parent())
        progress = Progress(self.store, job, run_dir)
        try:
            try:
                outcome = self._watch(job, proc, progress)
                progress.update()
            except Exception as exc:  # a bug here must not take the worker down with the job's trainer
                _stop(proc, signal.SIGINT)  # the trainer checkpoints first, so a resume loses nothing
                return self._fail_internal(job, exc)
            return self._finish(job, proc.returncode, outcome, progress, log_path)
        finally:
            self.store.update_job(job["id"], expect={"worker": self.id}, worker=None, lease_until=None)

    def _fail_internal(self, job: dict, exc: Exception) -> str:
        """The job fails with the worker's own error named (its checkpoints stay); the worker goes on."""
        traceback.print_exc(file=sys.stderr)
        message = f"the worker failed while following the job: {type(exc).__name__}: {exc}"
        return self._fail(job, {"code": "worker_error", "message": message, "param": None})

    def _fail(self, job: dict, error: dict) -> str:
        """The claimed job fails with `error` (also its last event); its status after."""
        try:
            transition(self.store, self.store.get_job(None, job["id"]), "failed", expect={"worker": self.id},
                       worker=None, lease_until=None,  # released with the status: no reader sees one without the other
                       error=error)
            self.store.add_event(job["id"], error["message"], level="error")
        except ConflictError:  # cancelled meanwhile: the API's change stands
            pass
        return self.store.get_job(None, job["id"])["status"]

    def _watch(self, job: dict, proc: subprocess.Popen, progress: "Progress") -> str:
        """Follow the subprocess until it exits; 'exited', 'cancelled', 'paused', 'stopped' or 'lost'."""
        while proc.poll() is None:
            progress.update()
            if self._stop:
                _stop(proc, signal.SIGINT)  # checkpoint now; the next worker resumes from it
                return "stopped"
            status = self.store.renew_lease(job["id"], self.id, self.settings.lease_seconds)
            if status in ("cancelled", None):
                _stop(proc, signal.SIGTERM)
                return "cancelled" if status else "lost"
            if status == "paused":
                _stop(proc, signal.SIGINT)  # hone train saves a checkpoint, then exits
                return "paused"
            time.sleep(min(self.poll, self.settings.lease_seconds / 4))
        return "exited"

    def _finish(self, job: dict, returncode: int, outcome: str, progress: "Progress", log_path: Path) -> str:
        store, job_id = self.store, job["id"]
        current = store.get_job(None, job_id)
        if outcome == "lost":
            self.log(f"{job_id}: another worker holds the job now; stopped")
            return current["status"]
        if outcome == "stopped" and current["status"] == "running":
            try:
                transition(store, current, "queued", expect={"worker": self.id})
                at = _checkpoint_step(Path(job["run_dir"])) or 0
                store.add_event(job_id, f"Worker {self.id} stopped at step {at}; the job waits for the next worker")
                return "queued"
            except ConflictError:
                return store.get_job(None, job_id)["status"]
        if outcome == "paused":
            store.add_event(job_id, f"Paused at step {_checkpoint_step(Path(job['run_dir'])) or 0}; "
                            "checkpoint saved")
            return "paused"
        if outcome == "cancelled" or current["status"] != "running":
            return current["status"]
        mine = {"worker": self.id}
        try:
            if returncode == 0:
                adapter = Path(job["run_dir"]) / "adapter"
                results = _final_metrics(adapter)
                final = transition(store, current, "succeeded", expect=mine, worker=None, lease_until=None,
                                   adapter_dir=str(adapter), fine_tuned_model=fine_tuned_model_name(current),
                                   trained_tokens=progress.tokens, results=results,
                                   result_files=[self._results_file(current, progress)])
                scores = {k: v for k, v in results.items() if k.startswith("eval_")}
                if scores:
                    store.add_event(job_id, "Evaluation: " + ", ".join(f"{k.removeprefix('eval_')}={v:.4g}"
                                    for k, v in scores.items() if isinstance(v, (int, float))),
                                    type="metrics", data=scores)
                store.add_event(job_id, f"New fine-tuned model created: {final['fine_tuned_model']}")
                return "succeeded"
            message = job_error_message(log_path, returncode, current, self.settings.data_dir)
            if returncode == 7:  # GraderError: its issues are the items the grader failed on
                for issue in message.splitlines()[1:]:
                    if issue.startswith("  ") and not issue.startswith("  hint:"):
                        progress.grader_failure(progress.last_step, issue.strip())
            error = {"code": EXIT_CODES.get(returncode, "training_failed"), "message": message,
                     "param": "training_file" if returncode == 3 else None}
            transition(store, current, "failed", expect=mine, worker=None, lease_until=None,
                       trained_tokens=progress.tokens, error=error)
            store.add_event(job_id, message, level="error")
            return "failed"
        except ConflictError:  # cancelled or paused between the exit and now: the API's change stands
            return store.get_job(None, job_id)["status"]


    def _results_file(self, job: dict, progress: "Progress") -> str:
        """OpenAI's result file: step,train_loss,valid_loss,learning_rate,tokens as CSV, in the job's project."""
        rows = ["step,train_loss,valid_loss,learning_rate,tokens"]
        for step in sorted(progress.records):
            r = progress.records[step]
            rows.append(",".join("" if r.get(k) is None else str(r.get(k))
                                 for k in ("step", "loss", "val_loss", "lr", "tokens")))
        file_id = new_id("file")
        path = self.settings.data_dir / "files" / f"{file_id}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")
        self.store.add_file(job["project_id"], {"id": file_id, "filename": "step_metrics.csv",
                                                "purpose": "fine-tune-results", "bytes": path.stat().st_size,
                                                "path": str(path), "report": None, "created_at": int(time.time())})
        return file_id


RATE_WINDOW = 20  # steps whose wall-clock rate estimates a job's finish


class Progress:
    """Turns the run's metrics.jsonl and checkpoints/ into job events, progress and checkpoint rows."""

    def __init__(self, store: Store, job: dict, run_dir: Path) -> None:
        self.store, self.job, self.run_dir = store, job, run_dir
        self.metrics = run_dir / "metrics.jsonl"
        self.offset, self.last_line = 0, b""  # where the last look ended, and the line it ended with
        self.last_step = (job.get("progress") or {}).get("step", 0)
        self.records: dict[int, dict] = {}
        self.tokens = 0
        self._seen_checkpoints = {c["step"] for c in store.list_checkpoints(job["id"], limit=10**6)}
        self.grader_messages: set[str] = set()
        data = (job.get("config") or {}).get("data") or {}  # server paths in messages become the file ids
        self.paths = {path: file_id for path, file_id in ((data.get("train"), job.get("training_file")),
                                                          (data.get("validation"), job.get("validation_file")),
                                                          (f"{run_dir}/", "")) if path and file_id is not None}

    def update(self) -> None:
        new = self._read()
        for record in new:
            step = record.get("step", 0)
            merged = self.records.setdefault(step, {})
            merged.update(record)
            if "loss" in record and step > self.last_step:
                self.last_step = step
                graded = f", grader errors={record['grader_errors']:.0%}" if record.get("grader_errors") else ""
                self.store.add_event(self.job["id"], f"Step {step}/{record.get('total_steps', '?')}: "
                                     f"training loss={record['loss']:.4f}{graded}", type="metrics",
                                     data={"step": step, "total_steps": record.get("total_steps"),
                                           "train_loss": record["loss"], "learning_rate": record.get("lr"),
                                           "tokens": record.get("tokens"), "grader_errors": record.get("grader_errors")})
                for failure in record.get("grader_failures", []):
                    self.grader_failure(step, f"{failure['where']}: {failure['message']}")
            if "val_loss" in record:
                self.store.add_event(self.job["id"], f"Step {step}: validation loss={record['val_loss']:.4f}",
                                     type="metrics", data={"step": step, "valid_loss": record["val_loss"]})
        if new:
            self.tokens = sum(r.get("tokens", 0) for r in self.records.values())
            steps = [r for r in self.records.values() if "loss" in r]
            if steps:
                last = max(steps, key=lambda r: r["step"])
                self.store.update_job(self.job["id"], trained_tokens=self.tokens,
                                      progress={"step": last["step"], "total_steps": last.get("total_steps"),
                                                "estimated_finish": self._estimated_finish(last)})
        self._checkpoints()

    def grader_failure(self, step: int, failure: str) -> None:
        """An event for a grader error ("item: message"), once per distinct message, at most GRADER_EVENTS."""
        failure = self.public(failure)[:MESSAGE_CHARS]
        where, _, message = failure.partition(": ")
        if message in self.grader_messages or len(self.grader_messages) > GRADER_EVENTS:
            return
        self.grader_messages.add(message)
        if len(self.grader_messages) > GRADER_EVENTS:
            self.store.add_event(self.job["id"], f"More than {GRADER_EVENTS} different grader errors; the rest are "
                                 "counted in each step's grader errors, not listed", level="warn")
            return
        self.store.add_event(self.job["id"], f"Grader error on {failure}", level="warn",
                             data={"step": step, "item": where, "message": message})

    def public(self, text: str) -> str:
        """`text` with the server's paths of the job's files and run replaced by file ids and run-relative paths."""
        for path, name in self.paths.items():
            text = text.replace(path, name)
        return text
    def _estimated_finish(self, last: dict) -> int | None:
        """When the run should end (unix seconds): the last step's time plus the steps left at the wall-clock
        rate of the last (up to) 20 steps, evaluations and checkpoints between them included. The rate is the
        median of the step-to-step times, so a pause inside the window does not count; None until two steps
        carry their time."""
        timed = sorted((r for r in self.records.values() if "loss" in r and "time" in r), key=lambda r: r["step"])
        window = timed[-RATE_WINDOW:]
        total = last.get("total_steps")
        if len(window) < 2 or not total:
            return None
        rate = statistics.median((b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(window, window[1:]))
        return int(window[-1]["time"] + (total - window[-1]["step"]) * max(rate, 0.0))

    def _read(self) -> list[dict]:
        """The lines written since the last look; all of them again when the file was rewritten: a resumed run
        cuts it back to its checkpoint and appends, maybe past where the last look ended, so the last line read
        is checked where it was (a size check alone would then read from mid-line)."""
        if not self.metrics.is_file():
            return []
        with open(self.metrics, "rb") as f:
            f.seek(self.offset - len(self.last_line))
            if f.read(len(self.last_line)) != self.last_line:
                self.offset, self.last_line = 0, b""
                f.seek(0)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
        if end:
            self.last_line = chunk[chunk.rfind(b"\n", 0, end - 1) + 1:end]
        self.offset += end
        return [json.loads(line) for line in chunk[:end].decode("utf-8").splitlines() if line.strip()]

    def _checkpoints(self) -> None:
        root = self.run_dir / "checkpoints"
        on_disk = {int(p.name.split("-")[1]) for p in root.glob("step-*") if (p / "state.json").is_file()}
        for step in sorted(on_disk | self._passed_saves()):
            if step in self._seen_checkpoints:
                continue
            metrics = self.records.get(step, {})
            if "loss" not in metrics:
                continue  # its metrics line is not read yet
            self._seen_checkpoints.add(step)
            name = f"{fine_tuned_model_name(self.job)}:ckpt-step-{step}"
            if self.store.add_checkpoint(self.job["id"], step, checkpoint_metrics(step, metrics), name):
                self.store.add_event(self.job["id"], f"Checkpoint created at step {step}")

    def _passed_saves(self) -> set[int]:
        """Steps `hone train` saved a checkpoint at (every train.save_every) that the run has gone past: it
        saves before the next step, and prunes old checkpoints, maybe before this worker's next look."""
        every = ((self.job.get("config") or {}).get("train") or {}).get("save_every")
        trained = [step for step, record in self.records.items() if "loss" in record]
        if not every or not trained:
            return set()
        last = max(trained)
        return {step for step in trained if step % every == 0 and step < last}



def checkpoint_metrics(step: int, record: dict) -> dict:
    """OpenAI's seven checkpoint metrics from the step's merged metrics.jsonl records. hone validates on the
    whole validation file, so `valid_*` and `full_valid_*` are the same numbers: those of the evaluation
    at this step, or None when none ran here (no validation file, or train.eval_every skipped the step);
    token accuracies are None for objectives that predict no tokens (DPO, GRPO, reward models)."""
    return {"step": step, "train_loss": record["loss"],
            "train_mean_token_accuracy": record.get("mean_token_accuracy"),
            "valid_loss": record.get("val_loss"), "valid_mean_token_accuracy": record.get("val_mean_token_accuracy"),
            "full_valid_loss": record.get("val_loss"),
            "full_valid_mean_token_accuracy": record.get("val_mean_token_accuracy")}


def _final_metrics(adapter: Path) -> dict:
    """The metrics recorded in the adapter's hone.json (train/valid loss, eval_* scores)."""
    try:
        return json.loads((adapter / "hone.json").read_text()).get("metrics", {})
    except (OSError, ValueError):
        return {}


def _checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's newest complete checkpoint (without importing torch)."""
    root = run_dir / "checkpoints"
    steps = [int(p.name.split("-")[1]) for p in root.glob("step-*") if (p / "state.json").is_file()] \
        if root.is_dir() else []
    return max(steps) if steps else None


def _stop(proc: subprocess.Popen, sig: int, grace: float = 60.0) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def job_error_message(log_path: Path, returncode: int, job: dict, data_dir: Path) -> str:
    """The `error: ...` the hone CLI printed (its last lines), or the exit code; the job's files named by
    their ids, and no path on the server shown."""
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    message = next(("\n".join(lines[i:i + 20]) for i in range(len(lines) - 1, -1, -1)
                    if lines[i].startswith(("error:", "internal error:"))), None)
    if message is None:
        tail = "\n".join(lines[-5:])
        message = f"training exited with code {returncode}" + (f":\n{tail}" if tail else "")
    data = (job.get("config") or {}).get("data") or {}
    for path, file_id in ((data.get("train"), job["training_file"]), (data.get("validation"), job["validation_file"])):
        if path and file_id:
            message = message.replace(str(path), file_id)
    message = message.replace(job["run_dir"], f"<{job['id']}>")
    return message.replace(str(data_dir), "<service data>")


def die_with_parent(sig: int = signal.SIGKILL):
    """A `preexec_fn`: in the child, ask Linux to send it `sig` when its parent dies, so a killed worker
    leaves no trainer and a killed service no worker; what the child writes is private (umask 077)."""
    def arm() -> None:
        os.umask(0o077)
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    return arm
