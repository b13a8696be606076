"""Payload models: what agents send is strict, round-trips, and off-contract input is explained."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from posfleet.contract import (
    MAX_PAYLOAD_BYTES,
    Battery,
    Channel,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Inventory,
    PayloadError,
    Printer,
    PrinterStatus,
    State,
    decode,
    encode,
    topic,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _health(seq: int = 7) -> HealthReport:
    return HealthReport(
        seq=seq,
        ts=NOW,
        interval_s=60,
        metrics=HealthMetrics(
            battery=Battery(percent=80, charging=False),
            printer=Printer(status=PrinterStatus.PAPER_LOW),
            temperature_c=31.5,
        ),
    )


def test_health_round_trips_through_the_wire_format() -> None:
    report = _health()
    message = decode(topic("T1", Channel.HEALTH), encode(report))
    assert message.payload == report
    assert message.topic.terminal_id == "T1"


def test_unknown_fields_are_rejected_on_agent_payloads() -> None:
    raw = json.loads(encode(_health()))
    raw["metrics"]["pan"] = "4111111111111111"
    with pytest.raises(PayloadError, match=r"metrics\.pan: Extra inputs are not permitted"):
        decode(topic("T1", Channel.HEALTH), json.dumps(raw).encode())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"seq": -1, "ts": "2026-01-01T00:00:00Z", "interval_s": 60, "metrics": {}}', "seq"),
        (b'{"seq": 1, "ts": "2026-01-01T00:00:00", "interval_s": 60, "metrics": {}}', "UTC offset"),
        (b'{"seq": "x", "ts": "2026-01-01T00:00:00Z", "interval_s": 60, "metrics": {}}', "seq"),
        (b"[]", "payload"),
    ],
)
def test_bad_health_payloads_get_a_one_line_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode(topic("T1", Channel.HEALTH), payload)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_oversize_payload_is_rejected_before_parsing() -> None:
    with pytest.raises(PayloadError, match="exceeds"):
        decode(topic("T1", Channel.HEALTH), b" " * (MAX_PAYLOAD_BYTES + 1))


def test_timestamps_are_normalised_to_utc() -> None:
    state = State.model_validate_json(
        b'{"online": true, "agent_version": "0.1.0", "boot_id": "b1",'
        b' "ts": "2026-11-23T13:00:00+01:00"}'
    )
    assert state.ts == NOW
    assert state.ts.utcoffset() == timedelta(0)


def test_inventory_rejects_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        Inventory(
            model="P400",
            serial="S1",
            firmware_version="1.0.0",
            agent_version="0.1.0",
            timezone="Mars/Olympus",
            ts=NOW,
        )


def test_fault_event_codes_are_machine_readable() -> None:
    with pytest.raises(ValueError, match="code"):
        FaultEvent(seq=1, ts=NOW, code="Printer Out!", component="printer", severity="error")
