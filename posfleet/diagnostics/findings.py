"""What the rule engine concludes: a rule started or stopped holding for a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from posfleet.diagnostics.rule_model import Rule


class FindingKind(StrEnum):
    """Whether a condition began or ended, or a rule took over a reported fault."""

    OPENED = "opened"
    CLEARED = "cleared"
    TAKEN_OVER = "taken_over"
    """The rule began to hold and the incident of the reported fault ``replaces`` (the
    same fault, reported before the rule could judge it) becomes this rule's."""


@dataclass(frozen=True)
class Finding:
    """One edge of a rule's condition on one terminal, with the values it saw."""

    kind: FindingKind
    terminal_id: str
    rule: Rule
    at: datetime
    facts: dict[str, Any] = field(default_factory=dict)
    replaces: Rule | None = None
    """For :attr:`FindingKind.TAKEN_OVER`: the reported fault's rule."""
