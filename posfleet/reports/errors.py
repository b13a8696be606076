"""Errors of the reports package."""

from __future__ import annotations


class ReportsError(Exception):
    """Base class of every error raised by :mod:`posfleet.reports`."""


class PeriodError(ReportsError):
    """A report period that cannot be used; ``parameter`` names the bad input."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


class UnknownReportError(ReportsError):
    """No report has this name."""

    def __init__(self, name: str, known: list[str]) -> None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        super().__init__(f"no report is called {shown!r}; the reports are {', '.join(known)}")
        self.name = name
        self.known = known
