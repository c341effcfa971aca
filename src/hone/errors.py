"""Errors that say where, what and how to fix; the CLI maps them to exit codes."""

from __future__ import annotations


class HoneError(Exception):
    """A user-facing error: `where` (file:line, config path, ...), `what` went wrong, a `hint`,
    and `issues`, every located problem found (a data file or config may have many)."""

    exit_code = 1

    def __init__(self, what: str, *, where: str = "", hint: str = "", issues: list | None = None) -> None:
        super().__init__(what)
        self.where = where
        self.what = what
        self.hint = hint
        self.issues = list(issues or [])

    def __str__(self) -> str:
        lines = [f"{self.where}: {self.what}" if self.where else self.what]
        lines += [f"  {issue}" for issue in self.issues]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class ConfigError(HoneError):
    """The run configuration is invalid."""

    exit_code = 2


class DataError(HoneError):
    """A data file cannot be used."""

    exit_code = 3


class ModelError(HoneError):
    """A base model or adapter cannot be found or loaded."""

    exit_code = 4


class ResourceError(HoneError):
    """A run needs more memory (or another resource) than the machine has."""

    exit_code = 6


class GraderError(HoneError):
    """A grader cannot grade: it fails on the training items, or on too many of the answers."""

    exit_code = 7


class RequestError(HoneError):
    """A request (an API call, a job request) asks for something invalid; `param` names the field,
    `code` is a short machine-readable reason and `extra` any structured detail (a data report)."""

    def __init__(self, what: str, *, param: str | None = None, code: str | None = None, hint: str = "",
                 extra: dict | None = None) -> None:
        super().__init__(what, where=param or "", hint=hint)
        self.param, self.code, self.extra = param, code, dict(extra or {})


class NotFoundError(RequestError):
    """The object named does not exist, or belongs to another project (the two look the same)."""


class ForbiddenError(RequestError):
    """The caller sees the object but may not do this to it (delete a base model)."""


class ConflictError(RequestError):
    """The object's current state does not allow the change (a job that ended, a file in use)."""


class QuotaError(RequestError):
    """A limit on how much a project may have at once is reached."""


class TooLargeError(RequestError):
    """A request or an upload is larger than the limit."""
