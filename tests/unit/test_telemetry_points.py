"""Health reports and fault events as InfluxDB line protocol (docs/telemetry.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from posfleet.broker_bridge.ingest_stats import Histogram
from posfleet.broker_bridge.telemetry_points import to_line
from posfleet.contract import (
    Battery,
    CardReader,
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Inventory,
    Message,
    Printer,
    PrinterStatus,
    ReaderCounters,
    Severity,
    Topic,
)

TS = datetime(2026, 3, 2, 9, 30, 15, 250_000, tzinfo=UTC)
MILLIS = 1772443815250


def test_a_health_report_is_one_point_with_numeric_fields() -> None:
    metrics = HealthMetrics(
        temperature_c=41.5,
        battery=Battery(percent=12, charging=True),
        printer=Printer(status=PrinterStatus.NO_PAPER),
        card_reader=CardReader(chip=ReaderCounters(reads=10, errors=2)),
        tamper=True,
    )
    report = HealthReport(seq=7, ts=TS, interval_s=60, metrics=metrics)
    line = to_line(Message(Topic("T-1", Channel.HEALTH), report))

    assert line is not None
    head, fields, millis = line.split(" ")
    assert head == "pos_health,terminal_id=T-1"
    assert millis == str(MILLIS)
    parsed = dict(field.split("=") for field in fields.split(","))
    assert parsed["seq"] == "7i"
    assert parsed["temperature_c"] == "41.5"
    assert parsed["battery_percent"] == "12.0"
    assert parsed["battery_charging"] == "1i"
    assert parsed["printer_fault"] == "1i"
    assert (parsed["chip_reads"], parsed["chip_errors"]) == ("10i", "2i")
    assert parsed["tamper"] == "1i"
    assert "rssi_dbm" not in parsed  # not measured: no field, rather than a made-up zero


def test_a_fault_event_is_tagged_by_code_component_and_severity() -> None:
    event = FaultEvent(
        seq=8, ts=TS, code="reader.chip_error", component=Component.CARD_READER,
        severity=Severity.WARNING, zvt_result_code=0x72,
    )  # fmt: skip
    line = to_line(Message(Topic("T-1", Channel.EVENT), event))
    assert line == (
        "pos_fault,terminal_id=T-1,code=reader.chip_error,component=card_reader,"
        f"severity=warning seq=8i,zvt_result_code=114i {MILLIS}"
    )


def test_channels_that_are_not_telemetry_make_no_point() -> None:
    inventory = Inventory(model="V400m", serial="S", firmware_version="1", agent_version="1", ts=TS)
    assert to_line(Message(Topic("T-1", Channel.INVENTORY), inventory)) is None


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram(bounds=(0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (1.0, 3)]
    assert (histogram.total, histogram.sum) == (4, 7.65)
