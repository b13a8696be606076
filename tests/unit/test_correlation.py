"""Fleet correlation, pure: which shared cause a set of open incidents points to."""

from __future__ import annotations

import pytest

from posfleet.diagnostics.fleet_correlation import (
    FIXED_BY_GROUP,
    SHARED_CAUSES,
    CorrelationPolicy,
    FleetGroup,
    Peer,
    choose_group,
)
from posfleet.diagnostics.rule_model import CorrelateBy, Escalation

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


def _group(by: CorrelateBy, value: str) -> FleetGroup:
    return FleetGroup(f"{by.value}:{value}/{RULE}", by, value, (_peer(1),))


def test_every_kind_of_shared_cause_has_its_own_remedy_and_who_fixes_it() -> None:
    assert set(SHARED_CAUSES) == set(CorrelateBy)
    remedies = {by: _group(by, "X1").remedy() for by in CorrelateBy}
    assert len({steps for steps in remedies.values()}) == len(CorrelateBy)
    for steps in remedies.values():
        assert steps and all(step and "{" not in step for step in steps)
    assert {by: cause.fixed_by for by, cause in SHARED_CAUSES.items()} == FIXED_BY_GROUP


@pytest.mark.parametrize(
    ("by", "value", "says", "never"),
    [
        (CorrelateBy.SITE, "S-9", ["router or modem on site", "at site S-9"], ["acquirer"]),
        (CorrelateBy.MERCHANT, "M-7", ["merchant M-7's contact"], ["acquirer"]),
        (
            CorrelateBy.ACQUIRER,
            "5",
            ["Nothing for the merchants to fix", "contacts the acquirer", "offline (fallback)"],
            ["check the router", "swap"],
        ),
        (
            CorrelateBy.FIRMWARE,
            "3.0.0",
            ["escalates to ops", "hold (pause) every rollout of firmware 3.0.0", "rollback"],
            ["router", "swap"],
        ),
    ],
)
def test_a_fleet_remedy_follows_the_shared_cause(
    by: CorrelateBy, value: str, says: list[str], never: list[str]
) -> None:
    steps = " ".join(_group(by, value).remedy())
    for text in says:
        assert text in steps
    for text in never:
        assert text not in steps


def test_the_acquirer_and_a_firmware_are_support_s_next_step_a_site_keeps_the_rules() -> None:
    for by in (CorrelateBy.ACQUIRER, CorrelateBy.FIRMWARE):
        assert _group(by, "x").escalation(Escalation.ON_SITE) is Escalation.REMOTE_FIX
    for by in (CorrelateBy.SITE, CorrelateBy.MERCHANT):
        assert _group(by, "x").escalation(Escalation.ON_SITE) is Escalation.ON_SITE
