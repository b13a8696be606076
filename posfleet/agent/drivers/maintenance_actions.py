"""The maintenance command set's remote actions, sans-IO: their request and reply data.

Diagnostics, counters, log chunks, configuration backup and restore, firmware slots and
transfers, each as TLV <-> dataclass in both directions. The driver decodes what the
simulator encodes with the same functions, so every mapping is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

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
from posfleet.agent.drivers.maintenance_codes import Tag
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.tlv import (
    Tlv,
    TlvRecord,
    flag_tlv,
    nested_tlv,
    sint_tlv,
    text_tlv,
    uint_tlv,
)

SHA256_BYTES = 32


def _required(value: int | None, what: str) -> int:
    if value is None:
        raise TlvError(f"reply lacks the {what}")
    return value


# --- diagnostics ----------------------------------------------------------------------


def diagnostic_to_tlv(result: DiagnosticResult) -> list[Tlv]:
    """Reply data of RUN DIAGNOSTIC."""
    items = [
        uint_tlv(Tag.DIAGNOSTIC_TEST, result.test),
        flag_tlv(Tag.DIAGNOSTIC_PASSED, result.passed),
        text_tlv(Tag.DIAGNOSTIC_DETAIL, result.detail),
    ]
    if result.latency_ms is not None:
        items.append(uint_tlv(Tag.DIAGNOSTIC_LATENCY_MS, result.latency_ms))
    items += [
        nested_tlv(
            Tag.DIAGNOSTIC_CHECK,
            [
                text_tlv(Tag.DIAGNOSTIC_CHECK_NAME, check.name),
                flag_tlv(Tag.DIAGNOSTIC_PASSED, check.passed),
                text_tlv(Tag.DIAGNOSTIC_DETAIL, check.detail),
            ],
        )
        for check in result.checks
    ]
    return items


def diagnostic_from_tlv(record: TlvRecord) -> DiagnosticResult:
    """Parse RUN DIAGNOSTIC reply data."""
    test, passed = record.uint(Tag.DIAGNOSTIC_TEST), record.flag(Tag.DIAGNOSTIC_PASSED)
    if test is None or passed is None:
        raise TlvError("diagnostic reply lacks the test or passed tag")
    try:
        kind = DiagnosticTest(test)
    except ValueError as exc:
        raise TlvError(f"unknown diagnostic test {test}") from exc
    checks = []
    for nested in record.nested(Tag.DIAGNOSTIC_CHECK):
        name, ok = nested.text(Tag.DIAGNOSTIC_CHECK_NAME), nested.flag(Tag.DIAGNOSTIC_PASSED)
        if not name or ok is None:
            raise TlvError("diagnostic check lacks its name or passed flag")
        checks.append(DiagnosticCheck(name, ok, nested.text(Tag.DIAGNOSTIC_DETAIL) or ""))
    return DiagnosticResult(
        test=kind,
        passed=passed,
        detail=record.text(Tag.DIAGNOSTIC_DETAIL) or "",
        latency_ms=record.uint(Tag.DIAGNOSTIC_LATENCY_MS),
        checks=checks,
    )


# --- counters -------------------------------------------------------------------------

_COUNTER_TAGS = {
    "lines_printed": Tag.COUNT_LINES_PRINTED,
    "paper_rolls_loaded": Tag.COUNT_PAPER_ROLLS,
    "card_insertions": Tag.COUNT_CARD_INSERTIONS,
    "magstripe_swipes": Tag.COUNT_MAGSTRIPE_SWIPES,
    "contactless_taps": Tag.COUNT_CONTACTLESS_TAPS,
    "card_read_errors": Tag.COUNT_READ_ERRORS,
    "battery_cycles": Tag.COUNT_BATTERY_CYCLES,
    "reboots": Tag.COUNT_REBOOTS,
    "transactions": Tag.COUNT_TRANSACTIONS,
    "settlements": Tag.COUNT_SETTLEMENTS,
    "firmware_updates": Tag.COUNT_FIRMWARE_UPDATES,
}


def counters_to_tlv(counters: TerminalCounters) -> list[Tlv]:
    """Reply data of READ COUNTERS; a terminal without a battery leaves its tag out."""
    items = []
    for name, tag in _COUNTER_TAGS.items():
        value = getattr(counters, name)
        if value is not None:
            items.append(uint_tlv(tag, value))
    return items


def counters_from_tlv(record: TlvRecord) -> TerminalCounters:
    """Parse READ COUNTERS reply data; absent counters read as 0 (battery: None)."""
    values = {name: record.uint(tag) for name, tag in _COUNTER_TAGS.items()}
    cycles = values.pop("battery_cycles")
    return TerminalCounters(battery_cycles=cycles, **{k: v or 0 for k, v in values.items()})


# --- logs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogChunk:
    """One COLLECT LOGS reply: ``total`` bytes in the extract, ``data`` from ``offset``."""

    total: int
    data: bytes


def log_request_to_tlv(start: datetime, end: datetime, offset: int) -> list[Tlv]:
    """Request data of COLLECT LOGS."""
    return [
        sint_tlv(Tag.LOG_START_S, int(start.timestamp())),
        sint_tlv(Tag.LOG_END_S, int(end.timestamp())),
        uint_tlv(Tag.LOG_OFFSET, offset),
    ]


def log_request_from_tlv(record: TlvRecord) -> tuple[datetime, datetime, int]:
    """Parse COLLECT LOGS request data into (start, end, offset)."""
    start, end = record.sint(Tag.LOG_START_S), record.sint(Tag.LOG_END_S)
    if start is None or end is None:
        raise TlvError("COLLECT LOGS without its start or end time")
    if end < start:
        raise TlvError("COLLECT LOGS end is before start")
    try:
        first, last = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise TlvError(f"COLLECT LOGS time {start} or {end} is out of range: {exc}") from exc
    return first, last, record.uint(Tag.LOG_OFFSET) or 0


def log_chunk_to_tlv(chunk: LogChunk) -> list[Tlv]:
    """Reply data of COLLECT LOGS."""
    return [uint_tlv(Tag.LOG_TOTAL_BYTES, chunk.total), Tlv(Tag.LOG_CHUNK, chunk.data)]


def log_chunk_from_tlv(record: TlvRecord) -> LogChunk:
    """Parse COLLECT LOGS reply data."""
    total = _required(record.uint(Tag.LOG_TOTAL_BYTES), "log size")
    return LogChunk(total, record.raw(Tag.LOG_CHUNK) or b"")


# --- configuration --------------------------------------------------------------------


def _param(key: str, value: str) -> Tlv:
    return nested_tlv(
        Tag.CONFIG_PARAM, [text_tlv(Tag.CONFIG_KEY, key), text_tlv(Tag.CONFIG_VALUE, value)]
    )


def params_to_tlv(params: dict[str, str]) -> list[Tlv]:
    """Key/value parameters, one nested item each (BACKUP reply, RESTORE request)."""
    return [_param(key, value) for key, value in params.items()]


def params_from_tlv(record: TlvRecord) -> dict[str, str]:
    """Parse the parameters of a BACKUP reply or a RESTORE request."""
    params: dict[str, str] = {}
    for nested in record.nested(Tag.CONFIG_PARAM):
        key, value = nested.text(Tag.CONFIG_KEY), nested.text(Tag.CONFIG_VALUE)
        if not key or value is None:
            raise TlvError("configuration parameter lacks its key or value")
        params[key] = value
    return params


def backup_to_tlv(backup: ConfigBackup) -> list[Tlv]:
    """Reply data of BACKUP CONFIG."""
    return params_to_tlv(backup.params) + [
        text_tlv(Tag.CONFIG_WITHHELD, key) for key in backup.withheld
    ]


def backup_from_tlv(record: TlvRecord) -> ConfigBackup:
    """Parse BACKUP CONFIG reply data."""
    return ConfigBackup(params_from_tlv(record), record.texts(Tag.CONFIG_WITHHELD))


def restore_result_to_tlv(result: ConfigRestoreResult) -> list[Tlv]:
    """Reply data of RESTORE CONFIG."""
    items = [text_tlv(Tag.CONFIG_APPLIED, key) for key in result.applied]
    items += [
        nested_tlv(
            Tag.CONFIG_REJECTED,
            [text_tlv(Tag.CONFIG_KEY, key), text_tlv(Tag.CONFIG_REASON, reason)],
        )
        for key, reason in result.rejected.items()
    ]
    return items


def restore_result_from_tlv(record: TlvRecord) -> ConfigRestoreResult:
    """Parse RESTORE CONFIG reply data."""
    rejected: dict[str, str] = {}
    for nested in record.nested(Tag.CONFIG_REJECTED):
        key = nested.text(Tag.CONFIG_KEY)
        if not key:
            raise TlvError("rejected parameter lacks its key")
        rejected[key] = nested.text(Tag.CONFIG_REASON) or ""
    return ConfigRestoreResult(record.texts(Tag.CONFIG_APPLIED), rejected)


# --- firmware -------------------------------------------------------------------------


def _slot(record: TlvRecord, tag: Tag) -> FirmwareSlot:
    text = record.text(tag)
    try:
        return FirmwareSlot(text or "")
    except ValueError as exc:
        raise TlvError(f"firmware slot {text!r} is neither A nor B") from exc


def slots_to_tlv(slots: FirmwareSlots) -> list[Tlv]:
    """Reply data of FIRMWARE STATUS."""
    items = [text_tlv(Tag.FW_ACTIVE_SLOT, slots.active)]
    items += [
        nested_tlv(
            Tag.FW_SLOT_INFO, [text_tlv(Tag.FW_SLOT, slot), text_tlv(Tag.FW_VERSION, version)]
        )
        for slot, version in slots.versions.items()
    ]
    items.append(flag_tlv(Tag.FW_PENDING_CONFIRM, slots.pending_confirm))
    if slots.last_rollback:
        items.append(text_tlv(Tag.FW_LAST_ROLLBACK, slots.last_rollback))
    return items


def slots_from_tlv(record: TlvRecord) -> FirmwareSlots:
    """Parse FIRMWARE STATUS reply data."""
    versions = {
        _slot(nested, Tag.FW_SLOT): nested.text(Tag.FW_VERSION) or ""
        for nested in record.nested(Tag.FW_SLOT_INFO)
    }
    return FirmwareSlots(
        active=_slot(record, Tag.FW_ACTIVE_SLOT),
        versions=versions,
        pending_confirm=bool(record.flag(Tag.FW_PENDING_CONFIRM)),
        last_rollback=record.text(Tag.FW_LAST_ROLLBACK) or "",
    )


@dataclass(frozen=True, slots=True)
class FirmwareImageInfo:
    """FIRMWARE BEGIN request data: what is about to arrive."""

    size: int
    sha256: bytes
    version: str


def begin_to_tlv(info: FirmwareImageInfo) -> list[Tlv]:
    """Request data of FIRMWARE BEGIN."""
    return [
        uint_tlv(Tag.FW_SIZE, info.size),
        Tlv(Tag.FW_SHA256, info.sha256),
        text_tlv(Tag.FW_VERSION, info.version),
    ]


def begin_from_tlv(record: TlvRecord) -> FirmwareImageInfo:
    """Parse FIRMWARE BEGIN request data."""
    size, digest = record.uint(Tag.FW_SIZE), record.raw(Tag.FW_SHA256)
    version = record.text(Tag.FW_VERSION)
    if size is None or digest is None or not version:
        raise TlvError("FIRMWARE BEGIN lacks the size, SHA-256 or version")
    if len(digest) != SHA256_BYTES:
        raise TlvError(f"SHA-256 of {len(digest)} bytes, expected {SHA256_BYTES}")
    return FirmwareImageInfo(size, digest, version)


def transfer_to_tlv(transfer: FirmwareTransfer) -> list[Tlv]:
    """Reply data of FIRMWARE BEGIN."""
    return [
        text_tlv(Tag.FW_SLOT, transfer.slot),
        uint_tlv(Tag.FW_BLOCK_SIZE, transfer.block_size),
        uint_tlv(Tag.FW_OFFSET, transfer.resume_offset),
    ]


def transfer_from_tlv(record: TlvRecord) -> FirmwareTransfer:
    """Parse FIRMWARE BEGIN reply data."""
    block = _required(record.uint(Tag.FW_BLOCK_SIZE), "block size")
    if block < 1:
        raise TlvError("terminal asks for firmware blocks of 0 bytes")
    return FirmwareTransfer(
        slot=_slot(record, Tag.FW_SLOT),
        block_size=block,
        resume_offset=record.uint(Tag.FW_OFFSET) or 0,
    )


def block_to_tlv(offset: int, data: bytes) -> list[Tlv]:
    """Request data of FIRMWARE BLOCK."""
    return [uint_tlv(Tag.FW_OFFSET, offset), Tlv(Tag.FW_DATA, data)]


def block_from_tlv(record: TlvRecord) -> tuple[int, bytes]:
    """Parse FIRMWARE BLOCK request data into (offset, data)."""
    offset, data = record.uint(Tag.FW_OFFSET), record.raw(Tag.FW_DATA)
    if offset is None or data is None:
        raise TlvError("FIRMWARE BLOCK lacks its offset or data")
    return offset, data
