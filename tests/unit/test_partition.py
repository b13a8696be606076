"""Partitions of the fleet: every terminal has exactly one instance, the same everywhere."""

from __future__ import annotations

import pytest

from posfleet.broker_bridge import BrokerConnection
from posfleet.broker_bridge.partition import Partition
from posfleet.central.settings import SettingsError, load_central_settings


def test_every_terminal_belongs_to_exactly_one_share_and_the_shares_are_even() -> None:
    shares = [Partition(k, 3) for k in (1, 2, 3)]
    terminals = [f"T-{n:05d}" for n in range(3000)]
    owners = [[s for s in shares if s.owns(t)] for t in terminals]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o[0] is s) for s in shares]
    assert min(sizes) > 900, sizes


def test_the_hash_is_fixed_so_a_terminal_keeps_its_instance_across_machines() -> None:
    # CRC-32: the same share on every machine, Python version and restart.
    assert [Partition(k, 4).owns("PF-000123") for k in (1, 2, 3, 4)].count(True) == 1
    assert Partition.parse("3/4").owns("PF-000123") is Partition(3, 4).owns("PF-000123")
    assert Partition(1, 1).owns("anything")


def test_a_topic_without_a_terminal_goes_to_the_first_share_only() -> None:
    assert Partition(1, 2).owns_topic("garbage")
    assert not Partition(2, 2).owns_topic("garbage")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("3/2", "the share must be 1 to 2"), ("0/2", "the share must be 1 to 2"), ("half", "K/N")],
)
def test_a_bad_partition_is_refused_with_what_to_write(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Partition.parse(spec)
    with pytest.raises(SettingsError, match=reason):
        load_central_settings(partition=spec)


def test_a_partition_and_a_shared_subscription_cannot_both_split_the_fleet() -> None:
    with pytest.raises(SettingsError, match="set one of them"):
        load_central_settings(partition="1/2", share_group="central")
    with pytest.raises(ValueError, match="set one of them"):
        BrokerConnection(partition="1/2", share_group="central")
    assert BrokerConnection(partition=" 2/3 ").partition == "2/3"
