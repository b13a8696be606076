"""Errors of the terminal drivers.

A :class:`DriverError` is a :class:`~posfleet.agent.serial.SerialLinkError` too: to the
agent, a terminal that answers nonsense is as unreachable as one that does not answer.
"""

from __future__ import annotations

from posfleet.agent.serial.errors import SerialLinkError


class DriverError(SerialLinkError):
    """Base class of every error raised by :mod:`posfleet.agent.drivers`."""


class TerminalRefusedError(DriverError):
    """The terminal answered a command with a negative completion (``84 xx``)."""

    def __init__(self, command: str, result_code: int, meaning: str) -> None:
        super().__init__(f"terminal refused {command}: result 0x{result_code:02X} ({meaning})")
        self.command = command
        self.result_code = result_code
        self.meaning = meaning


class MalformedReplyError(DriverError):
    """The terminal's reply arrived intact but does not follow the command set."""
