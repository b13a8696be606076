"""The TLV codec and the maintenance command set's TLV mapping."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posfleet.agent.drivers.base import (
    ConfigBackup,
    ConfigRestoreResult,
    DiagnosticCheck,
    DiagnosticResult,
    DiagnosticTest,
    FirmwareSlot,
    FirmwareSlots,
    FirmwareTransfer,
    TerminalCounters,
)
from posfleet.agent.drivers.maintenance_actions import (
    backup_from_tlv,
    backup_to_tlv,
    counters_from_tlv,
    counters_to_tlv,
    diagnostic_from_tlv,
    diagnostic_to_tlv,
    restore_result_from_tlv,
    restore_result_to_tlv,
    slots_from_tlv,
    slots_to_tlv,
    transfer_from_tlv,
    transfer_to_tlv,
)
from posfleet.agent.drivers.maintenance_protocol import Tag, health_from_tlv, health_to_tlv
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.tlv import (
    Tlv,
    TlvRecord,
    decode_tlv,
    encode_tlv,
    flag_tlv,
    sint_tlv,
    text_tlv,
    uint_tlv,
)
from posfleet.contract import (
    Battery,
    HealthMetrics,
    Keys,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    RebootReason,
    Transactions,
)


@pytest.mark.parametrize(
    ("item", "wire"),
    [
        (uint_tlv(0x50, 0), "50 01 00"),
        (uint_tlv(0x50, 86_400), "50 03 01 51 80"),
        (sint_tlv(0x31, -67), "31 01 bd"),
        (sint_tlv(0x24, 128), "24 02 00 80"),
        (flag_tlv(0x43, True), "43 01 01"),
        (text_tlv(0x01, "PF"), "01 02 50 46"),
        (Tlv(0x70, bytes(200)), "70 81 c8" + " 00" * 200),
        (Tlv(0x70, bytes(300)), "70 82 01 2c" + " 00" * 300),
    ],
)
def test_known_encodings(item: Tlv, wire: str) -> None:
    assert item.encode() == bytes.fromhex(wire)
    assert decode_tlv(bytes.fromhex(wire)) == [item]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("00 01 00", "reserved"),
        ("50", "has no length"),
        ("50 03 01", "announces 3 bytes"),
        ("50 83 00 00 01", "unsupported length form"),
        ("50 82 01", "length field truncated"),
    ],
)
def test_malformed_tlv_is_rejected_with_a_clear_error(wire: str, message: str) -> None:
    with pytest.raises(TlvError, match=message):
        decode_tlv(bytes.fromhex(wire))


def test_typed_reads_reject_values_of_the_wrong_shape() -> None:
    record = TlvRecord([Tlv(0x43, b"\x02"), Tlv(0x50, bytes(9)), Tlv(0x01, b"\xff")])
    with pytest.raises(TlvError, match="flag must be 00 or 01"):
        record.flag(0x43)
    with pytest.raises(TlvError, match="integer of 9 bytes"):
        record.uint(0x50)
    with pytest.raises(TlvError, match="not UTF-8"):
        record.text(0x01)
    assert record.uint(0x99) is None


@given(st.lists(st.tuples(st.integers(1, 254), st.binary(max_size=300)), max_size=8))
def test_any_sequence_round_trips(pairs: list[tuple[int, bytes]]) -> None:
    items = [Tlv(tag, value) for tag, value in pairs]
    assert decode_tlv(encode_tlv(items)) == items


@given(st.integers(-(1 << 63), (1 << 63) - 1))
def test_signed_integers_round_trip_in_the_shortest_form(value: int) -> None:
    item = sint_tlv(0x3A, value)
    assert TlvRecord([item]).sint(0x3A) == value
    assert len(item.value) == 1 or sint_tlv(0x3A, value >> 8).value != item.value


FULL = HealthMetrics(
    battery=Battery(percent=14.5, charging=False, health_percent=91.2, cycles=311),
    temperature_c=-3.4,
    printer=Printer(status=PrinterStatus.PAPER_LOW, lines_printed=123_456),
    network=Network(
        type=NetworkType.WIFI, rssi_dbm=-81, host_reachable=False, tls_failures=2, latency_ms=95
    ),
    storage_used_pct=91.3,
    memory_used_pct=40.0,
    clock_offset_s=-61.25,
    keys=Keys(dukpt_remaining=41_000, key_expiry=date(2027, 3, 31)),
    tamper=True,
    transactions=Transactions(approved=10, declined=3, decline_codes={"91": 2, "55": 1}),
    uptime_s=3600,
    reboot_reason=RebootReason.WATCHDOG,
)


def test_health_round_trips_through_the_command_set() -> None:
    metrics, rejected = health_from_tlv(TlvRecord(health_to_tlv(FULL)))
    assert metrics == FULL.model_copy(update={"card_reader": None})
    assert rejected == []


def test_an_invalid_metric_is_dropped_and_reported_without_losing_the_rest() -> None:
    replaced = (Tag.STORAGE_PERMILLE, Tag.PRINTER_STATUS)
    items = [i for i in health_to_tlv(FULL) if i.tag not in replaced]
    items += [uint_tlv(Tag.STORAGE_PERMILLE, 2000), uint_tlv(Tag.PRINTER_STATUS, 99)]
    metrics, rejected = health_from_tlv(TlvRecord(items))
    assert metrics.storage_used_pct is None and metrics.printer is None
    assert {r.split(":")[0] for r in rejected} == {"storage_used_pct", "printer"}
    assert metrics.battery == FULL.battery and metrics.tamper


# --- the remote actions' data -------------------------------------------------------------

_COUNT = st.integers(min_value=0, max_value=2**40)
_TEXT = st.text(min_size=1, max_size=20)


def _round_trip(items: list[Tlv]) -> TlvRecord:
    return TlvRecord.parse(encode_tlv(items))


@given(st.lists(_COUNT, min_size=10, max_size=10), st.none() | _COUNT)
def test_counters_round_trip(values: list[int], cycles: int | None) -> None:
    names = [
        "lines_printed",
        "paper_rolls_loaded",
        "card_insertions",
        "magstripe_swipes",
        "contactless_taps",
        "card_read_errors",
        "reboots",
        "transactions",
        "settlements",
        "firmware_updates",
    ]
    counters = TerminalCounters(battery_cycles=cycles, **dict(zip(names, values, strict=True)))
    assert counters_from_tlv(_round_trip(counters_to_tlv(counters))) == counters


@given(
    st.dictionaries(_TEXT, st.text(max_size=30), max_size=6),
    st.lists(_TEXT, max_size=3),
    st.dictionaries(_TEXT, st.text(max_size=30), max_size=3),
)
def test_config_round_trips(
    params: dict[str, str], withheld: list[str], why: dict[str, str]
) -> None:
    backup = ConfigBackup(params, withheld)
    assert backup_from_tlv(_round_trip(backup_to_tlv(backup))) == backup
    result = ConfigRestoreResult(sorted(params), why)
    assert restore_result_from_tlv(_round_trip(restore_result_to_tlv(result))) == result


def test_diagnostic_with_checks_round_trips() -> None:
    result = DiagnosticResult(
        DiagnosticTest.SELF_TEST,
        False,
        "failed: host",
        None,
        [DiagnosticCheck("host", False, "no route"), DiagnosticCheck("printer", True, "ok")],
    )
    wire = encode_tlv(diagnostic_to_tlv(result))
    assert wire.startswith(bytes.fromhex("72 01 04 73 01 00 74 0c"))
    assert diagnostic_from_tlv(TlvRecord.parse(wire)) == result


def test_firmware_slots_and_transfer_round_trip() -> None:
    slots = FirmwareSlots(
        FirmwareSlot.B, {FirmwareSlot.A: "2.4.1", FirmwareSlot.B: "2.5.0"}, True, "watchdog"
    )
    assert slots_from_tlv(_round_trip(slots_to_tlv(slots))) == slots
    transfer = FirmwareTransfer(FirmwareSlot.B, 4096, 8192)
    assert encode_tlv(transfer_to_tlv(transfer)).hex(" ") == "b2 01 42 b8 02 10 00 b9 02 20 00"
    assert transfer_from_tlv(_round_trip(transfer_to_tlv(transfer))) == transfer
    with pytest.raises(TlvError, match="neither A nor B"):
        slots_from_tlv(TlvRecord.parse(bytes.fromhex("b0 01 43")))
