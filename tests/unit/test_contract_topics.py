"""Topic building and parsing: the one place terminal ids are checked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posfleet.contract import (
    Channel,
    Topic,
    TopicError,
    channel_filter,
    topic,
    uplink_filters,
    validate_terminal_id,
)

VALID_IDS = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")


@pytest.mark.parametrize("channel", list(Channel))
def test_every_channel_round_trips(channel: Channel) -> None:
    name = topic("T-0001", channel)
    assert name == f"pos/v1/T-0001/{channel.value}"
    assert Topic.parse(name) == Topic("T-0001", channel)


@given(VALID_IDS, st.sampled_from(list(Channel)))
def test_any_valid_id_round_trips(terminal_id: str, channel: Channel) -> None:
    assert Topic.parse(topic(terminal_id, channel)) == Topic(terminal_id, channel)


@pytest.mark.parametrize(
    "bad_id",
    ["", "a/b", "+", "#", "t+1", "$SYS", "x" * 65, "tab\t", "ümlaut", "a b", "../x"],
)
def test_bad_terminal_ids_are_rejected(bad_id: str) -> None:
    with pytest.raises(TopicError, match="invalid terminal id"):
        validate_terminal_id(bad_id)
    with pytest.raises(TopicError):
        topic(bad_id, Channel.HEALTH)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("pos/v2/T1/health", "not under pos/v1/"),
        ("pos/v1/T1", "has no channel"),
        ("pos/v1/T1/telemetry", "unknown channel"),
        ("pos/v1/T1/cmd/result/x", "unknown channel"),
        ("pos/v1/T+1/health", "invalid terminal id"),
        ("pos/v1//health", "invalid terminal id"),
    ],
)
def test_off_contract_topics_are_rejected_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(TopicError, match=reason):
        Topic.parse(name)


@pytest.mark.parametrize("channel", list(Channel))
def test_a_channel_filter_is_that_channel_of_every_terminal(channel: Channel) -> None:
    assert channel_filter(channel) == topic("T-1", channel).replace("/T-1/", "/+/")


def test_uplink_filters_cover_exactly_what_terminals_publish() -> None:
    filters = uplink_filters()
    assert "pos/v1/+/health" in filters
    assert "pos/v1/+/cmd/result" in filters
    assert not any(f.endswith("/cmd") or f.endswith("fw/offer") for f in filters)
    shared = uplink_filters("central")
    assert all(f.startswith("$share/central/pos/v1/+/") for f in shared)
    with pytest.raises(TopicError):
        uplink_filters("bad/group")
