"""Store rows rendered as OpenAI API objects (files, fine-tuning jobs, events, checkpoints, lists)."""

from __future__ import annotations

from pathlib import Path


def file_object(row: dict) -> dict:
    report = row.get("report") or {}
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
            "filename": row["filename"], "purpose": row["purpose"], "status": "processed",
            "status_details": None, "expires_at": None,
            "report": {k: report.get(k) for k in ("lines", "valid", "formats", "duplicates", "ok")}}


def job_object(row: dict) -> dict:
    method = row["method"]
    hyper = method.get(method["type"], {}).get("hyperparameters", {})
    return {
        "id": row["id"], "object": "fine_tuning.job", "created_at": row["created_at"],
        "error": row["error"], "fine_tuned_model": row["fine_tuned_model"], "finished_at": row["finished_at"],
        "hyperparameters": {k: hyper[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier")
                            if k in hyper},
        "model": row["model"], "organization_id": row["project_id"], "result_files": row["result_files"] or [],
        "seed": row["seed"],
        "status": row["status"], "trained_tokens": row["trained_tokens"], "training_file": row["training_file"],
        "validation_file": row["validation_file"], "estimated_finish": None, "integrations": [],
        "metadata": row["metadata"], "method": method, "user_provided_suffix": row["suffix"],
        # hone's additions: {"step", "total_steps"} of the training; the tuned model's final metrics;
        # the URL of the run's `hone report` page when there is one
        "progress": row["progress"], "results": row["results"],
        "report": f"/v1/fine_tuning/jobs/{row['id']}/report" if report_page(row) else None,
    }


def report_page(row: dict) -> Path | None:
    """The run's `hone report` page (RUN/report/index.html), if it was written."""
    page = Path(row["run_dir"]) / "report" / "index.html" if row.get("run_dir") else None
    return page if page is not None and page.is_file() else None


def event_object(row: dict) -> dict:
    return {"id": f"ftevent-{row['seq']}", "object": "fine_tuning.job.event", "created_at": row["created_at"],
            "level": row["level"], "message": row["message"], "data": row["data"] or {}, "type": row["type"]}


def event_seq(event_id: str | None) -> int | None:
    """The store's sequence number in an event id (`ftevent-42` -> 42); None for None or a malformed id."""
    if event_id is None:
        return None
    number = event_id.removeprefix("ftevent-")
    return int(number) if number.isdigit() else -1


def checkpoint_object(row: dict) -> dict:
    return {"id": row["id"], "object": "fine_tuning.job.checkpoint", "created_at": row["created_at"],
            "fine_tuned_model_checkpoint": row["fine_tuned_model_checkpoint"], "fine_tuning_job_id": row["job_id"],
            "metrics": row["metrics"] or {}, "step_number": row["step"]}


def list_object(items: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}
