"""The maintenance command set's monitoring replies, sans-IO: identity, health and faults.

Both sides of the wire use this module: the driver decodes what the terminal encodes (the
simulator encodes with it), so the mapping is written once and round-trip tested. The
remote actions' data live in :mod:`maintenance_actions`, the numbers in :mod:`maintenance_codes`.
``docs/serial-protocol.md`` describes the same thing byte by byte for terminal vendors.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from posfleet.agent import wire
from posfleet.agent.drivers.base import DetectedFault, HealthData, TerminalIdentity
from posfleet.agent.drivers.maintenance_codes import (
    MAINTENANCE_CLASS,
    MAX_FAULTS_PER_REPLY,
    RESULT_MEANINGS,
    Instruction,
    ResultCode,
    Tag,
    request,
)
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.tlv import (
    MAX_INT_BYTES,
    Tlv,
    TlvRecord,
    flag_tlv,
    nested_tlv,
    sint_tlv,
    text_tlv,
    uint_tlv,
)
from posfleet.contract import Component, NetworkType, PrinterStatus, RebootReason, Severity

if TYPE_CHECKING:
    from posfleet.contract import HealthMetrics

__all__ = [
    "MAINTENANCE_CLASS",
    "MAX_FAULTS_PER_REPLY",
    "RESULT_MEANINGS",
    "Instruction",
    "ResultCode",
    "Tag",
    "fault_from_tlv",
    "fault_to_tlv",
    "health_data_from_tlv",
    "health_from_tlv",
    "health_to_tlv",
    "identity_from_tlv",
    "identity_to_tlv",
    "request",
]

PRINTER_STATUS_CODES = {
    PrinterStatus.OK: 0,
    PrinterStatus.PAPER_LOW: 1,
    PrinterStatus.NO_PAPER: 2,
    PrinterStatus.JAM: 3,
    PrinterStatus.COVER_OPEN: 4,
    PrinterStatus.OVERHEAT: 5,
    PrinterStatus.FAULT: 6,
}
NETWORK_TYPE_CODES = {
    NetworkType.ETHERNET: 0,
    NetworkType.WIFI: 1,
    NetworkType.CELLULAR: 2,
    NetworkType.DIALUP: 3,
}
REBOOT_REASON_CODES = {
    RebootReason.UNKNOWN: 0,
    RebootReason.POWER_ON: 1,
    RebootReason.USER: 2,
    RebootReason.REMOTE: 3,
    RebootReason.WATCHDOG: 4,
    RebootReason.CRASH: 5,
    RebootReason.FIRMWARE_UPDATE: 6,
    RebootReason.LOW_BATTERY: 7,
}

E = TypeVar("E")


def _code(table: dict[E, int], tag: Tag, value: int) -> E:
    for member, code in table.items():
        if code == value:
            return member
    raise TlvError(f"TLV tag 0x{tag:02x}: unknown code {value}")


def _permille(pct: float) -> int:
    return round(pct * 10)


# --- identity -------------------------------------------------------------------------


def identity_to_tlv(identity: TerminalIdentity) -> list[Tlv]:
    """Reply data of IDENTIFY."""
    items = [
        text_tlv(Tag.MODEL, identity.model),
        text_tlv(Tag.SERIAL, identity.serial),
        text_tlv(Tag.HW_REVISION, identity.hw_revision),
        text_tlv(Tag.FIRMWARE_VERSION, identity.firmware_version),
        text_tlv(Tag.MERCHANT_ID, identity.merchant_id),
    ]
    items += [text_tlv(Tag.APP_VERSION, f"{n}={v}") for n, v in identity.app_versions.items()]
    items += [text_tlv(Tag.CAPABILITY, c) for c in identity.capabilities]
    return items


def identity_from_tlv(record: TlvRecord) -> TerminalIdentity:
    """Parse IDENTIFY reply data; model, serial and firmware version are required."""
    model, serial = record.text(Tag.MODEL), record.text(Tag.SERIAL)
    firmware = record.text(Tag.FIRMWARE_VERSION)
    if not model or not serial or not firmware:
        raise TlvError("IDENTIFY reply lacks the model, serial or firmware version tag")
    apps: dict[str, str] = {}
    for entry in record.texts(Tag.APP_VERSION):
        name, sep, version = entry.partition("=")
        if not sep or not name:
            raise TlvError(f"app version {entry!r} is not name=version")
        apps[name] = version
    return TerminalIdentity(
        model=model,
        serial=serial,
        hw_revision=record.text(Tag.HW_REVISION) or "",
        firmware_version=firmware,
        app_versions=apps,
        capabilities=record.texts(Tag.CAPABILITY),
        merchant_id=record.text(Tag.MERCHANT_ID) or "",
    )


# --- health ---------------------------------------------------------------------------


def health_to_tlv(m: HealthMetrics) -> list[Tlv]:
    """Reply data of READ HEALTH; metrics the terminal lacks are left out."""
    items: list[Tlv] = [flag_tlv(Tag.TAMPER, m.tamper)]
    if m.battery is not None:
        items += [
            uint_tlv(Tag.BATTERY_PERMILLE, _permille(m.battery.percent)),
            flag_tlv(Tag.BATTERY_CHARGING, m.battery.charging),
        ]
        if m.battery.health_percent is not None:
            items.append(uint_tlv(Tag.BATTERY_HEALTH_PERMILLE, _permille(m.battery.health_percent)))
        if m.battery.cycles is not None:
            items.append(uint_tlv(Tag.BATTERY_CYCLES, m.battery.cycles))
    if m.temperature_c is not None:
        items.append(sint_tlv(Tag.TEMPERATURE_DECI_C, round(m.temperature_c * 10)))
    if m.printer is not None:
        items.append(uint_tlv(Tag.PRINTER_STATUS, PRINTER_STATUS_CODES[m.printer.status]))
        if m.printer.lines_printed is not None:
            items.append(uint_tlv(Tag.PRINTER_LINES, m.printer.lines_printed))
    if m.card_reader is not None:
        r = m.card_reader
        items += [
            uint_tlv(Tag.CHIP_READS, r.chip.reads),
            uint_tlv(Tag.CHIP_ERRORS, r.chip.errors),
            uint_tlv(Tag.MAGSTRIPE_READS, r.magstripe.reads),
            uint_tlv(Tag.MAGSTRIPE_ERRORS, r.magstripe.errors),
            uint_tlv(Tag.CONTACTLESS_READS, r.contactless.reads),
            uint_tlv(Tag.CONTACTLESS_ERRORS, r.contactless.errors),
        ]
        if r.insertions_total is not None:
            items.append(uint_tlv(Tag.CARD_INSERTIONS, r.insertions_total))
    if m.network is not None:
        n = m.network
        items += [
            uint_tlv(Tag.NETWORK_TYPE, NETWORK_TYPE_CODES[n.type]),
            flag_tlv(Tag.HOST_REACHABLE, n.host_reachable),
            uint_tlv(Tag.TLS_FAILURES, n.tls_failures),
        ]
        if n.rssi_dbm is not None:
            items.append(sint_tlv(Tag.RSSI_DBM, n.rssi_dbm))
        if n.latency_ms is not None:
            items.append(uint_tlv(Tag.HOST_LATENCY_MS, round(n.latency_ms)))
    if m.storage_used_pct is not None:
        items.append(uint_tlv(Tag.STORAGE_PERMILLE, _permille(m.storage_used_pct)))
    if m.memory_used_pct is not None:
        items.append(uint_tlv(Tag.MEMORY_PERMILLE, _permille(m.memory_used_pct)))
    if m.clock_offset_s is not None:
        items.append(sint_tlv(Tag.CLOCK_OFFSET_MS, round(m.clock_offset_s * 1000)))
    if m.keys is not None:
        items.append(flag_tlv(Tag.KEY_MISSING, m.keys.key_missing))
        if m.keys.dukpt_remaining is not None:
            items.append(uint_tlv(Tag.DUKPT_REMAINING, m.keys.dukpt_remaining))
        if m.keys.key_expiry is not None:
            # isoformat, not strftime("%Y"): glibc writes the year 272 as "272", not "0272".
            expiry = m.keys.key_expiry.isoformat().replace("-", "")
            items.append(text_tlv(Tag.KEY_EXPIRY, expiry))
    if m.transactions is not None:
        t = m.transactions
        items += [
            uint_tlv(Tag.TX_APPROVED, t.approved),
            uint_tlv(Tag.TX_DECLINED, t.declined),
            uint_tlv(Tag.TX_FAILED, t.failed),
            uint_tlv(Tag.TX_UNSETTLED, t.unsettled_batch),
            flag_tlv(Tag.TX_IN_PROGRESS, t.in_progress),
        ]
        items += [
            Tlv(Tag.DECLINE_CODE_COUNT, code.encode("ascii") + uint_tlv(1, count).value)
            for code, count in t.decline_codes.items()
        ]
    if m.uptime_s is not None:
        items.append(uint_tlv(Tag.UPTIME_S, m.uptime_s))
    if m.reboot_reason is not None:
        items.append(uint_tlv(Tag.REBOOT_REASON, REBOOT_REASON_CODES[m.reboot_reason]))
    return items


def health_data_from_tlv(record: TlvRecord) -> tuple[HealthData, list[str]]:
    """Parse READ HEALTH reply data into plain health data (no pydantic: the agent's loop).

    Returns the metrics, each section checked against the contract's ``HealthMetrics``
    (:func:`posfleet.agent.wire.check_field`), and the names of sections that were present
    but invalid: those are left out (and reported) rather than costing the rest of the
    report. Unknown tags are ignored, so terminals may add metrics before the agent knows them.
    """
    rejected: list[str] = []
    fields: HealthData = {}

    def section(name: str, build: Callable[[], object]) -> None:
        try:
            value = build()
            if value is not None:
                fields[name] = wire.check_field("HealthMetrics", name, value)
        except wire.WireError as exc:
            rejected.append(str(exc))
        except (TlvError, ValueError) as exc:
            rejected.append(f"{name}: {_first_line(exc)}")

    r = record
    section("tamper", lambda: r.flag(Tag.TAMPER))
    section("battery", lambda: _battery(r))
    section("temperature_c", lambda: _scaled(r.sint(Tag.TEMPERATURE_DECI_C), 10))
    section("printer", lambda: _printer(r))
    section("card_reader", lambda: _card_reader(r))
    section("network", lambda: _network(r))
    section("storage_used_pct", lambda: _scaled(r.uint(Tag.STORAGE_PERMILLE), 10))
    section("memory_used_pct", lambda: _scaled(r.uint(Tag.MEMORY_PERMILLE), 10))
    section("clock_offset_s", lambda: _scaled(r.sint(Tag.CLOCK_OFFSET_MS), 1000))
    section("keys", lambda: _keys(r))
    section("transactions", lambda: _transactions(r))
    section("uptime_s", lambda: r.uint(Tag.UPTIME_S))
    section("reboot_reason", lambda: _reboot_reason(r))
    return fields, rejected


def health_from_tlv(record: TlvRecord) -> tuple[HealthMetrics, list[str]]:
    """:func:`health_data_from_tlv` as the contract's model (imports pydantic)."""
    from posfleet.contract import HealthMetrics

    fields, rejected = health_data_from_tlv(record)
    return HealthMetrics.model_validate(fields), rejected


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _present(**values: Any) -> dict[str, Any]:
    """A section as plain data, without the values the terminal did not send."""
    return {name: value for name, value in values.items() if value is not None}


def _scaled(value: int | None, divisor: int) -> float | None:
    return None if value is None else value / divisor


def _battery(r: TlvRecord) -> dict[str, Any] | None:
    permille = r.uint(Tag.BATTERY_PERMILLE)
    if permille is None:
        return None
    return _present(
        percent=permille / 10,
        charging=bool(r.flag(Tag.BATTERY_CHARGING)),
        health_percent=_scaled(r.uint(Tag.BATTERY_HEALTH_PERMILLE), 10),
        cycles=r.uint(Tag.BATTERY_CYCLES),
    )


def _printer(r: TlvRecord) -> dict[str, Any] | None:
    status = r.uint(Tag.PRINTER_STATUS)
    if status is None:
        return None
    return _present(
        status=_code(PRINTER_STATUS_CODES, Tag.PRINTER_STATUS, status),
        lines_printed=r.uint(Tag.PRINTER_LINES),
    )


def _card_reader(r: TlvRecord) -> dict[str, Any] | None:
    tags = (
        Tag.CHIP_READS,
        Tag.CHIP_ERRORS,
        Tag.MAGSTRIPE_READS,
        Tag.MAGSTRIPE_ERRORS,
        Tag.CONTACTLESS_READS,
        Tag.CONTACTLESS_ERRORS,
    )
    values = [r.uint(tag) for tag in tags]
    if all(v is None for v in values) and r.raw(Tag.CARD_INSERTIONS) is None:
        return None
    chip_r, chip_e, mag_r, mag_e, cl_r, cl_e = (v or 0 for v in values)
    return _present(
        chip={"reads": chip_r, "errors": chip_e},
        magstripe={"reads": mag_r, "errors": mag_e},
        contactless={"reads": cl_r, "errors": cl_e},
        insertions_total=r.uint(Tag.CARD_INSERTIONS),
    )


def _network(r: TlvRecord) -> dict[str, Any] | None:
    kind = r.uint(Tag.NETWORK_TYPE)
    if kind is None:
        return None
    reachable = r.flag(Tag.HOST_REACHABLE)
    if reachable is None:
        raise TlvError("network type given without host-reachable flag")
    latency = r.uint(Tag.HOST_LATENCY_MS)
    return _present(
        type=_code(NETWORK_TYPE_CODES, Tag.NETWORK_TYPE, kind),
        rssi_dbm=r.sint(Tag.RSSI_DBM),
        host_reachable=reachable,
        tls_failures=r.uint(Tag.TLS_FAILURES) or 0,
        latency_ms=None if latency is None else float(latency),
    )


def _keys(r: TlvRecord) -> dict[str, Any] | None:
    missing, remaining, expiry = (
        r.flag(Tag.KEY_MISSING),
        r.uint(Tag.DUKPT_REMAINING),
        r.text(Tag.KEY_EXPIRY),
    )
    if missing is None and remaining is None and expiry is None:
        return None
    expiry_date = None
    if expiry is not None:
        if len(expiry) != 8 or not expiry.isdigit():
            raise TlvError(f"key expiry {expiry!r} is not YYYYMMDD")
        expiry_date = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:]))
    return _present(dukpt_remaining=remaining, key_expiry=expiry_date, key_missing=bool(missing))


def _transactions(r: TlvRecord) -> dict[str, Any] | None:
    tags = (Tag.TX_APPROVED, Tag.TX_DECLINED, Tag.TX_FAILED, Tag.TX_UNSETTLED)
    approved, declined, failed, unsettled = (r.uint(tag) for tag in tags)
    in_progress = r.flag(Tag.TX_IN_PROGRESS)
    codes: dict[str, int] = {}
    for value in r.all(Tag.DECLINE_CODE_COUNT):
        if len(value) < 3:
            raise TlvError("decline code entry shorter than code + count")
        if len(value) > 2 + MAX_INT_BYTES:
            # Like every other counter: a count past 64 bits is a broken terminal, and
            # neither the TLV encoder nor the centre's store could hold it.
            raise TlvError(f"decline code count of {len(value) - 2} bytes (1 to 8 allowed)")
        codes[value[:2].decode("ascii", "replace")] = int.from_bytes(value[2:], "big")
    present = (approved, declined, failed, unsettled, in_progress)
    if all(v is None for v in present) and not codes:
        return None
    return _present(
        approved=approved or 0,
        declined=declined or 0,
        failed=failed or 0,
        unsettled_batch=unsettled or 0,
        in_progress=bool(in_progress),
        decline_codes=codes,
    )


def _reboot_reason(r: TlvRecord) -> RebootReason | None:
    code = r.uint(Tag.REBOOT_REASON)
    return None if code is None else _code(REBOOT_REASON_CODES, Tag.REBOOT_REASON, code)


# --- faults ---------------------------------------------------------------------------


def fault_to_tlv(seq: int, fault: DetectedFault) -> Tlv:
    """One fault record of a READ FAULTS reply."""
    items = [
        uint_tlv(Tag.FAULT_SEQ, seq),
        text_tlv(Tag.FAULT_CODE, fault.code),
        text_tlv(Tag.FAULT_COMPONENT, fault.component.value),
        text_tlv(Tag.FAULT_SEVERITY, fault.severity.value),
        text_tlv(Tag.FAULT_DETAIL, fault.detail),
    ]
    if fault.zvt_result_code is not None:
        items.append(uint_tlv(Tag.FAULT_ZVT_RESULT, fault.zvt_result_code))
    return nested_tlv(Tag.FAULT, items)


def fault_from_tlv(record: TlvRecord) -> tuple[int, DetectedFault]:
    """Parse one fault record into its sequence number and the fault."""
    seq, code = record.uint(Tag.FAULT_SEQ), record.text(Tag.FAULT_CODE)
    component, severity = record.text(Tag.FAULT_COMPONENT), record.text(Tag.FAULT_SEVERITY)
    if seq is None or not code or component is None or severity is None:
        raise TlvError("fault record lacks its sequence, code, component or severity")
    try:
        fault = DetectedFault(
            code=code,
            component=Component(component),
            severity=Severity(severity),
            detail=record.text(Tag.FAULT_DETAIL) or "",
            zvt_result_code=record.uint(Tag.FAULT_ZVT_RESULT),
        )
    except ValueError as exc:
        raise TlvError(f"fault record {seq}: {exc}") from exc
    return seq, fault
