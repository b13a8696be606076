"""Errors of the helpdesk: one base class, context as attributes."""

from __future__ import annotations


class HelpdeskError(Exception):
    """Base class of every error raised by :mod:`posfleet.helpdesk`."""


class CaseNotFoundError(HelpdeskError):
    """No case has this number."""

    def __init__(self, case_id: int) -> None:
        super().__init__(f"no case #{case_id}")
        self.case_id = case_id


class CaseInputError(HelpdeskError):
    """A field of a case, a note or a change that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class CaseTransitionError(HelpdeskError):
    """The case's state does not allow the change asked for (or it changed meanwhile)."""


class LinkTargetNotFoundError(HelpdeskError):
    """The incident, command or playbook run to link does not exist."""

    def __init__(self, kind: str, ref: str) -> None:
        super().__init__(f"there is no {kind.replace('_', ' ')} {ref!r} to link")
        self.kind = kind
        self.ref = ref
