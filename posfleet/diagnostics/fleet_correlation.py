"""Fleet correlation: incidents that share a cause become children of one fleet incident.

Pure: :func:`choose_group` looks at one new incident and its open peers (same rule) and
names the group they form, if any. Thirty terminals of one site losing the acquirer host
at once is that site's network; the same fault at many sites at once is the acquirer;
a fault that rises only on terminals that just took firmware X is firmware X.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from posfleet.diagnostics.rule_model import CorrelateBy


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

    def describe(self, rule_title: str, count: int) -> str:
        """A one-line title for the fleet incident grouping ``count`` terminals."""
        n = count
        where = {
            CorrelateBy.SITE: f"at site {self.value}",
            CorrelateBy.MERCHANT: f"of merchant {self.value}",
            CorrelateBy.ACQUIRER: f"across {self.value} sites (acquirer side)",
            CorrelateBy.FIRMWARE: f"on firmware {self.value}",
        }[self.by]
        return f"{rule_title}: {n} terminals {where}"

    def cause(self) -> str:
        """What the shared cause most probably is."""
        return {
            CorrelateBy.SITE: (
                f"Many terminals of site {self.value} show this at once: the site's local"
                " network or internet line, not each terminal."
            ),
            CorrelateBy.MERCHANT: (
                f"Many terminals of merchant {self.value} show this at once: the merchant's"
                " network or configuration, not each terminal."
            ),
            CorrelateBy.ACQUIRER: (
                "Terminals at many different sites show this at once: the acquirer host or"
                " the network path to it is down."
            ),
            CorrelateBy.FIRMWARE: (
                f"The fault rises on terminals that recently installed firmware {self.value}:"
                " a regression in that firmware."
            ),
        }[self.by]


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
