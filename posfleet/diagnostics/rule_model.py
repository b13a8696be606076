"""What a diagnostic rule is, once its file has been read and its CEL compiled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from posfleet.contract import Component, Severity
from posfleet.diagnostics.cel_expressions import Expression

_ENGINE_GROUPS = frozenset({"increase", "events"})
"""Variables the engine computes per rule rather than reads from the report."""


class Escalation(StrEnum):
    """What fixes the fault when the merchant cannot: support's next step."""

    REMOTE_FIX = "remote_fix"
    ON_SITE = "on_site"
    SWAP = "swap"


class FixLocation(StrEnum):
    """Where the rule's remedy is carried out, and by whom: what support tells the merchant."""

    MERCHANT = "merchant"
    """On site, by the merchant (support can talk them through it on the phone)."""
    REMOTE = "remote"
    """From the support desk, with remote commands; nobody needs to be on site."""
    TECHNICIAN = "technician"
    """A technician's visit to the merchant."""


class CorrelateBy(StrEnum):
    """Shared causes under which a rule's incidents are grouped into one fleet incident."""

    SITE = "site"
    MERCHANT = "merchant"
    ACQUIRER = "acquirer"
    FIRMWARE = "firmware"


@dataclass(frozen=True)
class EventCount:
    """Counts the terminal's fault events whose code matches one of ``codes`` (globs)."""

    name: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """One diagnostic rule: a condition over a terminal's reports, and what to do about it.

    ``when`` opens the incident once it has held for ``hold_for``; the incident resolves
    when ``clear_when`` holds (hysteresis), or when ``when`` no longer does if no
    ``clear_when`` is given. ``increase`` names counter expressions whose growth over
    ``window`` the condition reads as ``increase.<name>`` (resets at reboot survive);
    ``events`` counts fault events over ``window`` as ``events.<name>``; an
    ``absence_intervals`` rule fires when no report came for that many report intervals.
    """

    id: str
    title: str
    component: Component
    severity: Severity
    cause: str
    remedy: tuple[str, ...]
    escalation: Escalation
    when: Expression | None = None
    clear_when: Expression | None = None
    hold_for: timedelta = timedelta(0)
    window: timedelta = timedelta(minutes=10)
    increase: tuple[tuple[str, Expression], ...] = ()
    events: tuple[EventCount, ...] = ()
    absence_intervals: float | None = None
    correlate: tuple[CorrelateBy, ...] = ()
    playbook: str | None = None
    fixed_by: FixLocation | None = None
    """Who carries out ``remedy``, and where; None when the rule file does not say."""
    kb: str | None = None
    """The knowledge-base entry that explains the rule (where ``cause`` and ``remedy`` come
    from unless the rule file writes its own); None when there is none."""
    source: str = field(default="", compare=False)
    """``file:line`` the rule was read from, for messages."""

    @property
    def inputs(self) -> frozenset[str]:
        """Report fields (top-level metric names) whose change can change the verdict."""
        names: set[str] = set()
        for expr in (self.when, self.clear_when, *(e for _, e in self.increase)):
            if expr is not None:
                names |= expr.variables
        return frozenset(names - _ENGINE_GROUPS)

    @property
    def input_paths(self) -> frozenset[str]:
        """Report fields, two levels deep, whose change can change the verdict."""
        paths: set[str] = set()
        for expr in (self.when, self.clear_when, *(e for _, e in self.increase)):
            if expr is not None:
                paths |= expr.paths
        return frozenset(p for p in paths if p.split(".")[0] not in _ENGINE_GROUPS)

    @property
    def windowed(self) -> bool:
        """True when the verdict can change with time alone (windows slide, absences grow)."""
        return bool(self.increase or self.events or self.absence_intervals)
