"""Errors that say where, what and how to fix; the CLI maps them to exit codes."""

from __future__ import annotations


class HoneError(Exception):
    """A user-facing error: `where` (file:line, config path, ...), `what` went wrong, a `hint`."""

    exit_code = 1

    def __init__(self, what: str, *, where: str = "", hint: str = "") -> None:
        super().__init__(what)
        self.where = where
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(HoneError):
    """The run configuration is invalid."""

    exit_code = 2


class DataError(HoneError):
    """A data file cannot be used; `issues` holds every problem found, each already located."""

    exit_code = 3

    def __init__(self, what: str, *, where: str = "", hint: str = "", issues: list | None = None) -> None:
        super().__init__(what, where=where, hint=hint)
        self.issues = list(issues or [])

    def __str__(self) -> str:
        lines = [super().__str__()]
        lines += [f"  {issue}" for issue in self.issues]
        return "\n".join(lines)


class ModelError(HoneError):
    """A base model or adapter cannot be found or loaded."""

    exit_code = 4
