"""Fleet correlation, pure: which shared cause a set of open incidents points to."""

from __future__ import annotations

from posfleet.diagnostics.fleet_correlation import CorrelationPolicy, Peer, choose_group
from posfleet.diagnostics.rule_model import CorrelateBy

RULE = "network.host_unreachable"
DIMS = (CorrelateBy.ACQUIRER, CorrelateBy.SITE, CorrelateBy.MERCHANT)


def _peer(n: int, site: str | None = "S1", merchant: str | None = "M1", fw: str = "2.4.1") -> Peer:
    return Peer(n, f"T-{n}", site, merchant, fw)


def test_one_site_is_the_sites_network() -> None:
    peers = [_peer(n) for n in range(30)]
    group = choose_group(RULE, peers[0], peers, DIMS)
    assert group is not None
    assert group.key == f"site:S1/{RULE}"
    assert len(group.members) == 30
    assert "site's local network" in group.cause()


def test_many_sites_at_once_is_the_acquirer() -> None:
    peers = [_peer(n, site=f"S{n}", merchant=f"M{n}") for n in range(5)]
    group = choose_group(RULE, peers[0], peers, DIMS)
    assert group is not None and group.by is CorrelateBy.ACQUIRER
    assert group.key == f"acquirer/{RULE}"


def test_too_few_terminals_is_no_group() -> None:
    peers = [_peer(1), _peer(2)]
    assert choose_group(RULE, peers[0], peers, DIMS) is None


def test_merchant_when_sites_are_unknown() -> None:
    peers = [_peer(n, site=None) for n in range(3)]
    group = choose_group(RULE, peers[0], peers, DIMS)
    assert group is not None and group.key == f"merchant:M1/{RULE}"


def test_firmware_only_counts_terminals_that_just_updated() -> None:
    peers = [_peer(n, site=f"S{n}", merchant=f"M{n}", fw="3.0.0") for n in range(4)]
    updated = {"T-0", "T-1", "T-2"}
    group = choose_group(
        "system.reboot_loop",
        peers[0],
        peers,
        (CorrelateBy.FIRMWARE,),
        recently_updated=lambda tid: tid in updated,
    )
    assert group is not None and group.key == "firmware:3.0.0/system.reboot_loop"
    assert {p.terminal_id for p in group.members} == updated
    strict = CorrelationPolicy(min_members=4)
    assert (
        choose_group(
            "system.reboot_loop",
            peers[0],
            peers,
            (CorrelateBy.FIRMWARE,),
            policy=strict,
            recently_updated=lambda tid: tid in updated,
        )
        is None
    )
