"""Errors of the terminal simulator."""

from __future__ import annotations

from posfleet.agent.drivers.maintenance_codes import RESULT_MEANINGS, ResultCode


class SimulatorError(Exception):
    """Base class of every error raised by :mod:`posfleet.simulator`."""


class TerminalRefusal(SimulatorError):
    """The simulated terminal says no; the responder answers ``84 <code> 00``."""

    def __init__(self, code: ResultCode, why: str = "") -> None:
        super().__init__(why or RESULT_MEANINGS[code])
        self.code = code


class ScenarioError(SimulatorError, ValueError):
    """A scenario file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"scenario {path}: {reason}")
        self.path = path
        self.reason = reason
