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


class CommandTimeoutError(DiagnosticsError):
    """A terminal did not answer a command before the server-side deadline."""

    def __init__(self, terminal_id: str, command_id: str, timeout_s: float) -> None:
        super().__init__(
            f"terminal {terminal_id} did not answer command {command_id} within {timeout_s:g} s"
        )
        self.terminal_id = terminal_id
        self.command_id = command_id
        self.timeout_s = timeout_s
