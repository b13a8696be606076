"""Raw MQTT messages as a terminal would publish them, for feeding the ingest directly."""

from __future__ import annotations

from datetime import UTC, datetime

from posfleet.broker_bridge import RawMessage
from posfleet.contract import Channel, HealthMetrics, HealthReport, State, encode, topic

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
"""When the builders' messages say they were made."""


def raw(terminal_id: str, channel: Channel, payload: bytes) -> RawMessage:
    """``payload`` on ``terminal_id``'s ``channel``."""
    return RawMessage(topic(terminal_id, channel), payload)


def state_msg(terminal_id: str) -> RawMessage:
    """The retained 'online' state of a freshly booted agent."""
    payload = encode(State(online=True, agent_version="1.4.0", boot_id="b1", ts=T0))
    return raw(terminal_id, Channel.STATE, payload)


def health_msg(terminal_id: str, seq: int, temperature: float = 41.0) -> RawMessage:
    """A health report carrying only a temperature."""
    metrics = HealthMetrics(temperature_c=temperature)
    report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics)
    return raw(terminal_id, Channel.HEALTH, encode(report))
