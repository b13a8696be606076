"""Health reports and fault events as InfluxDB points (the mapping in docs/telemetry.md).

Pure: no I/O. Measurement ``pos_health``: one point per report, tagged with the
terminal id, numeric fields only (VictoriaMetrics drops string fields; booleans are
written as 0/1 so every backend can average them). Measurement ``pos_fault``: one point
per fault event, tagged with code, component and severity. Lines are in the InfluxDB
line protocol with millisecond timestamps.
"""

from __future__ import annotations

from datetime import datetime

from posfleet.contract import FaultEvent, HealthReport, Message

HEALTH_MEASUREMENT = "pos_health"
FAULT_MEASUREMENT = "pos_fault"


def _fields(report: HealthReport) -> dict[str, float | int]:
    m = report.metrics
    fields: dict[str, float | int] = {
        "seq": report.seq,
        "interval_s": report.interval_s,
        "tamper": int(m.tamper),
    }
    optional: dict[str, float | int | None] = {
        "temperature_c": m.temperature_c,
        "storage_used_pct": m.storage_used_pct,
        "memory_used_pct": m.memory_used_pct,
        "clock_offset_s": m.clock_offset_s,
        "uptime_s": m.uptime_s,
    }
    if m.battery is not None:
        optional["battery_percent"] = m.battery.percent
        optional["battery_charging"] = int(m.battery.charging)
    if m.printer is not None:
        optional["printer_fault"] = int(not m.printer.status.working)
        optional["printer_lines"] = m.printer.lines_printed
    if m.card_reader is not None:
        for name in ("chip", "magstripe", "contactless"):
            counters = getattr(m.card_reader, name)
            optional[f"{name}_reads"] = counters.reads
            optional[f"{name}_errors"] = counters.errors
    if m.network is not None:
        optional["rssi_dbm"] = m.network.rssi_dbm
        optional["host_reachable"] = int(m.network.host_reachable)
        optional["tls_failures"] = m.network.tls_failures
        optional["latency_ms"] = m.network.latency_ms
    if m.keys is not None:
        optional["dukpt_remaining"] = m.keys.dukpt_remaining
    if m.transactions is not None:
        t = m.transactions
        optional.update(
            tx_approved=t.approved,
            tx_declined=t.declined,
            tx_failed=t.failed,
            tx_unsettled=t.unsettled_batch,
        )
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def _escape(text: str, special: str) -> str:
    for char in "\\" + special:
        text = text.replace(char, "\\" + char)
    return text


def _key(text: str) -> str:
    """A measurement, tag key, tag value or field key, escaped for the line protocol."""
    return _escape(text, ", =")


def _value(value: float | int) -> str:
    # bool is an int too; callers convert booleans to 0/1 before they get here.
    if isinstance(value, int):
        return f"{value}i"
    return repr(float(value))


def _line(
    measurement: str, tags: dict[str, str], fields: dict[str, float | int], ts: datetime
) -> str:
    tag_text = "".join(f",{_key(k)}={_key(v)}" for k, v in tags.items())
    field_text = ",".join(f"{_key(k)}={_value(v)}" for k, v in fields.items())
    millis = int(ts.timestamp() * 1000)
    return f"{_key(measurement)}{tag_text} {field_text} {millis}"


def to_line(message: Message) -> str | None:
    """The line-protocol point for ``message``, or None for channels that are not telemetry."""
    terminal_id = message.topic.terminal_id
    payload = message.payload
    if isinstance(payload, HealthReport):
        return _line(HEALTH_MEASUREMENT, {"terminal_id": terminal_id}, _fields(payload), payload.ts)
    if isinstance(payload, FaultEvent):
        tags = {
            "terminal_id": terminal_id,
            "code": payload.code,
            "component": payload.component.value,
            "severity": payload.severity.value,
        }
        fields: dict[str, float | int] = {"seq": payload.seq}
        if payload.zvt_result_code is not None:
            fields["zvt_result_code"] = payload.zvt_result_code
        return _line(FAULT_MEASUREMENT, tags, fields, payload.ts)
    return None
