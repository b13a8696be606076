"""Errors of the diagnostics package."""

from __future__ import annotations

from pathlib import Path


class DiagnosticsError(Exception):
    """Base class of every error raised by :mod:`posfleet.diagnostics`."""


class RuleFileError(DiagnosticsError):
    """A rule file that cannot be used: says which file, which line and why."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class ConditionError(DiagnosticsError):
    """A rule condition failed at evaluation time (wrong types, missing field)."""

    def __init__(self, rule_id: str, expression: str, reason: str) -> None:
        super().__init__(f"rule {rule_id}: {expression!r}: {reason}")
        self.rule_id = rule_id
        self.expression = expression
        self.reason = reason


class IncidentNotFoundError(DiagnosticsError):
    """No incident with the given id exists."""

    def __init__(self, incident_id: int) -> None:
        super().__init__(f"no incident #{incident_id}")
        self.incident_id = incident_id


class IncidentTransitionError(DiagnosticsError):
    """A lifecycle change that the incident's state does not allow."""


class PlaybookError(DiagnosticsError):
    """A playbook that does not exist or cannot be started."""


class PlaybookTargetError(DiagnosticsError):
    """A playbook cannot run on the terminal asked for (or on any) from this incident."""

    def __init__(self, message: str, *, terminal: str | None) -> None:
        super().__init__(message)
        self.terminal = terminal


class CommandTimeoutError(DiagnosticsError):
    """A terminal did not answer a command before the server-side deadline."""

    def __init__(self, terminal_id: str, command_id: str, timeout_s: float) -> None:
        super().__init__(
            f"terminal {terminal_id} did not answer command {command_id} within {timeout_s:g} s"
        )
        self.terminal_id = terminal_id
        self.command_id = command_id
        self.timeout_s = timeout_s


class CommandRequestError(DiagnosticsError):
    """A staff command that cannot be issued as asked; ``field`` names the bad input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownTerminalError(DiagnosticsError):
    """No terminal with that id has ever reported."""

    def __init__(self, terminal_id: str) -> None:
        super().__init__(f"no terminal {terminal_id!r}")
        self.terminal_id = terminal_id


class BackupNotFoundError(DiagnosticsError):
    """No configuration backup with that id."""

    def __init__(self, backup_id: int) -> None:
        super().__init__(f"no configuration backup {backup_id}")
        self.backup_id = backup_id


class RestoreRefusedError(DiagnosticsError):
    """A restore onto a replacement that cannot go ahead as asked; ``field`` names why.

    ``conflict`` is True when the request is well formed but the registry's state
    forbids it (the old terminal was already replaced by another one).
    """

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.conflict = conflict
