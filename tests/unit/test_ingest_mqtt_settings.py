"""The bridge's broker connection settings."""

from __future__ import annotations

import pydantic
import pytest

from posfleet.broker_bridge import BrokerConnection


def test_shared_group_shares_live_channels_and_keeps_retained_ones_per_instance() -> None:
    filters = BrokerConnection(share_group="central").subscriptions()
    # Brokers never deliver retained messages to a shared subscription.
    assert sorted(f for f in filters if not f.startswith("$share/")) == [
        "pos/v1/+/inventory",
        "pos/v1/+/state",
    ]
    assert "$share/central/pos/v1/+/health" in filters
    assert "$share/central/pos/v1/+/event" in filters
    assert len(filters) == len(BrokerConnection().subscriptions())


def test_without_a_group_every_instance_gets_everything() -> None:
    assert "pos/v1/+/state" in BrokerConnection().subscriptions()


@pytest.mark.parametrize("group", ["", "a/b", "x+", "#"])
def test_share_group_that_would_change_the_filter_is_rejected(group: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="share_group"):
        BrokerConnection(share_group=group)


def test_password_never_shows_in_logs() -> None:
    connection = BrokerConnection(username="central", password="s3cret-value")
    assert "s3cret-value" not in repr(connection)
    assert connection.password is not None
    assert connection.password.get_secret_value() == "s3cret-value"
