"""Errors of the remote-command handlers; each one becomes a ``CommandResult``."""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """Base class: a command that cannot end ``ok``; the message goes into the result."""

    def __init__(self, reason: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.output = output or {}


class CommandRejected(CommandError):
    """The command was not run: unknown name, invalid arguments, unsupported by the driver."""


class CommandFailed(CommandError):
    """The command ran and did not succeed (the terminal refused it, a test did not pass)."""
