"""Fleet correlation: incidents that share a cause become children of one fleet incident.

Pure: :func:`choose_group` looks at one new incident and its open peers (same rule) and
names the group they form, if any. Thirty terminals of one site losing the acquirer host
at once is that site's network; the same fault at many sites at once is the acquirer;
a fault that rises only on terminals that just took firmware X is firmware X.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from posfleet.diagnostics.rule_model import CorrelateBy, Escalation, FixLocation


@dataclass(frozen=True)
class SharedCause:
    """What a fleet incident tells support about one kind of shared cause.

    ``where``, ``cause`` and ``remedy`` are texts with ``{value}`` standing for the group's
    value (the site, the merchant, the number of sites, the firmware version).
    """

    where: str
    cause: str
    remedy: tuple[str, ...]
    """The steps for the whole group; they replace the rule's steps for one terminal."""
    fixed_by: FixLocation
    escalation: Escalation | None
    """Support's next step when the remedy does not help; None: the rule's own."""


# -- visible text (a fleet incident's title, cause and remedy, by shared cause) -------------
SHARED_CAUSES: dict[CorrelateBy, SharedCause] = {
    CorrelateBy.SITE: SharedCause(
        where="at site {value}",
        cause=(
            "Many terminals of site {value} show this at once: the site's local network or"
            " internet line, not each terminal."
        ),
        remedy=(
            "Call the merchant: every affected terminal is at site {value}, so the shop's"
            " network is at fault, not the terminals one by one",
            "Ask them to check the router or modem on site: powered on, its lights normal,"
            " the cables to the terminals and to the wall socket firmly in",
            "Have them restart the router or modem (off for 30 seconds, then on) and wait"
            " two minutes for the terminals to reconnect",
            "If other devices in the shop have no internet either, the merchant calls their"
            " internet provider; the terminals recover by themselves once the line is back",
        ),
        fixed_by=FixLocation.MERCHANT,
        escalation=None,
    ),
    CorrelateBy.MERCHANT: SharedCause(
        where="of merchant {value}",
        cause=(
            "Many terminals of merchant {value} show this at once: the merchant's network or"
            " configuration, not each terminal."
        ),
        remedy=(
            "Call merchant {value}'s contact (head office or IT), not each shop: every"
            " affected terminal is theirs",
            "Ask whether their network, firewall or internet provider changed lately, and"
            " have the router or modem checked and restarted at the affected shops",
            "Check whether new parameters were pushed to this merchant's terminals lately;"
            " if so, push the previous ones back",
        ),
        fixed_by=FixLocation.MERCHANT,
        escalation=None,
    ),
    CorrelateBy.ACQUIRER: SharedCause(
        where="across {value} sites (acquirer side)",
        cause=(
            "Terminals at many different sites show this at once: the acquirer host or the"
            " network path to it is down."
        ),
        remedy=(
            "Nothing for the merchants to fix: do not have them restart routers or"
            " terminals, the fault is not in their shops",
            "Support contacts the acquirer (its status page or operations desk) with this"
            " incident's number and how many terminals are affected",
            "Tell merchants who call that card payments fail on the acquirer's side and to"
            " wait; the terminals recover by themselves once the host answers again",
            "Where the acquirer allows offline (fallback) payments, the merchant can take"
            " them up to the floor limit meanwhile; otherwise ask for another means of payment",
        ),
        fixed_by=FixLocation.REMOTE,
        escalation=Escalation.REMOTE_FIX,
    ),
    CorrelateBy.FIRMWARE: SharedCause(
        where="on firmware {value}",
        cause=(
            "The fault rises on terminals that recently installed firmware {value}:"
            " a regression in that firmware."
        ),
        remedy=(
            "Nothing for the merchants to fix on site: the fault came with firmware {value}",
            "Support escalates to ops with this incident's number: ops hold (pause) every"
            " rollout of firmware {value} so no more terminals take it, and decide on a"
            " rollback",
            "Tell merchants who call that the fault is known and fixed remotely: the"
            " terminals get the fix or their previous firmware in their maintenance window",
        ),
        fixed_by=FixLocation.REMOTE,
        escalation=Escalation.REMOTE_FIX,
    ),
}
"""Every kind of shared cause's texts, in one place: titles, causes, remedies, who fixes."""

FIXED_BY_GROUP: dict[CorrelateBy, FixLocation] = {
    by: shared.fixed_by for by, shared in SHARED_CAUSES.items()
}
"""Where a shared cause is fixed: a site's or merchant's network on site, by the merchant;
the acquirer's host or a firmware regression from the support desk."""


@dataclass(frozen=True)
class Peer:
    """What correlation needs to know about one open incident."""

    incident_id: int
    terminal_id: str
    site_id: str | None
    merchant_id: str | None
    firmware_version: str | None


@dataclass(frozen=True)
class FleetGroup:
    """A shared cause and the incidents it explains."""

    key: str
    """Unique among unresolved fleet incidents, e.g. ``site:S-1/network.host_unreachable``."""
    by: CorrelateBy
    value: str
    members: tuple[Peer, ...]

    @property
    def _shared(self) -> SharedCause:
        return SHARED_CAUSES[self.by]

    def describe(self, rule_title: str, count: int) -> str:
        """A one-line title for the fleet incident grouping ``count`` terminals."""
        where = self._shared.where.format(value=self.value)
        return f"{rule_title}: {count} terminals {where}"

    @property
    def fixed_by(self) -> FixLocation:
        """Where the shared cause is fixed (see :data:`FIXED_BY_GROUP`)."""
        return self._shared.fixed_by

    def cause(self) -> str:
        """What the shared cause most probably is."""
        return self._shared.cause.format(value=self.value)

    def remedy(self) -> tuple[str, ...]:
        """What to do about the shared cause: the steps for the group, not one terminal."""
        return tuple(step.format(value=self.value) for step in self._shared.remedy)

    def escalation(self, rule_escalation: Escalation) -> Escalation:
        """Support's next step for the group: the shared cause's, else the rule's."""
        return self._shared.escalation or rule_escalation


@dataclass(frozen=True)
class CorrelationPolicy:
    """How many incidents make a group."""

    min_members: int = 3
    min_sites_for_acquirer: int = 3


def choose_group(
    rule_id: str,
    incident: Peer,
    peers: Sequence[Peer],
    dimensions: Sequence[CorrelateBy],
    *,
    policy: CorrelationPolicy = CorrelationPolicy(),
    recently_updated: Callable[[str], bool] = lambda _terminal_id: False,
) -> FleetGroup | None:
    """The first of ``dimensions`` under which ``incident`` and its ``peers`` form a group.

    ``peers`` are the open incidents of the same rule, ``incident`` included or not.
    ``recently_updated(terminal_id)`` says whether a terminal changed firmware lately.
    """
    everyone = {p.incident_id: p for p in peers}
    everyone[incident.incident_id] = incident
    members_all = tuple(everyone.values())
    for by in dimensions:
        if by is CorrelateBy.ACQUIRER:
            sites = {p.site_id for p in members_all if p.site_id}
            if len(sites) >= policy.min_sites_for_acquirer:
                return FleetGroup(f"acquirer/{rule_id}", by, str(len(sites)), members_all)
            continue
        value = _value(incident, by)
        if not value:
            continue
        members = tuple(p for p in members_all if _value(p, by) == value)
        if by is CorrelateBy.FIRMWARE:
            members = tuple(p for p in members if recently_updated(p.terminal_id))
        if len(members) >= policy.min_members and incident in members:
            return FleetGroup(f"{by.value}:{value}/{rule_id}", by, value, members)
    return None


def _value(peer: Peer, by: CorrelateBy) -> str | None:
    if by is CorrelateBy.SITE:
        return peer.site_id
    if by is CorrelateBy.MERCHANT:
        return peer.merchant_id
    if by is CorrelateBy.FIRMWARE:
        return peer.firmware_version
    return None
