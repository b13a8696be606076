"""Driver for terminals that speak the posfleet maintenance command set."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from posfleet.agent.drivers.base import (
    CollectedLogs,
    ConfigBackup,
    ConfigRestoreResult,
    DetectedFault,
    DiagnosticResult,
    DiagnosticTest,
    FirmwareSlots,
    FirmwareTransfer,
    HealthData,
    TerminalCounters,
    TerminalIdentity,
)
from posfleet.agent.drivers.errors import MalformedReplyError, TerminalRefusedError
from posfleet.agent.drivers.maintenance_actions import (
    FirmwareImageInfo,
    backup_from_tlv,
    begin_to_tlv,
    block_to_tlv,
    counters_from_tlv,
    diagnostic_from_tlv,
    log_chunk_from_tlv,
    log_request_to_tlv,
    params_to_tlv,
    restore_result_from_tlv,
    slots_from_tlv,
    transfer_from_tlv,
)
from posfleet.agent.drivers.maintenance_codes import (
    MAX_FIRMWARE_BLOCK_BYTES,
    RESULT_MEANINGS,
    Instruction,
    ResultCode,
    Tag,
    request,
)
from posfleet.agent.drivers.maintenance_protocol import (
    fault_from_tlv,
    health_data_from_tlv,
    identity_from_tlv,
)
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.link import Link
from posfleet.agent.serial.tlv import Tlv, TlvRecord, sint_tlv, text_tlv, uint_tlv

if TYPE_CHECKING:
    from posfleet.contract import HealthMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REPLY_TIMEOUT_S = 10.0
DIAGNOSTIC_REPLY_TIMEOUT_S = 60.0
"""A printer test or a host ping takes longer than reading a register."""
FIRMWARE_VERIFY_TIMEOUT_S = 120.0
"""Hashing a whole image on a slow terminal CPU, or rebooting into it, takes a while."""
DEFAULT_MAX_LOG_BYTES = 4 << 20


class MaintenanceDriver:
    """A :class:`~posfleet.agent.drivers.base.TerminalDriver` over the maintenance command set.

    Faults are acknowledged on the next READ FAULTS: the terminal keeps each fault until the
    agent confirms it has seen it, so a reply lost on the line does not lose faults.
    """

    def __init__(self, link: Link, *, reply_timeout: float = DEFAULT_REPLY_TIMEOUT_S) -> None:
        self.link = link
        self.reply_timeout = reply_timeout
        self.rejected_metrics = 0
        """Health sections the terminal sent but that failed validation (left out)."""
        self._last_fault_seq = 0

    async def identify(self) -> TerminalIdentity:
        """Model, serial number, versions and capabilities."""
        record = await self._call(Instruction.IDENTIFY)
        return self._parse("IDENTIFY", lambda: identity_from_tlv(record))

    async def read_health_data(self) -> HealthData:
        """Every metric the terminal reports; invalid sections are dropped and counted."""
        record = await self._call(Instruction.READ_HEALTH)
        metrics, rejected = self._parse("READ HEALTH", lambda: health_data_from_tlv(record))
        if rejected:
            self.rejected_metrics += len(rejected)
            log.warning("terminal sent invalid health metrics, left out: %s", "; ".join(rejected))
        return metrics

    async def read_health(self) -> HealthMetrics:
        """:meth:`read_health_data` as the contract's model (imports pydantic)."""
        from posfleet.contract import HealthMetrics

        return HealthMetrics.model_validate(await self.read_health_data())

    async def read_faults(self) -> list[DetectedFault]:
        """Faults raised since the previous call, oldest first."""
        record = await self._call(
            Instruction.READ_FAULTS, [uint_tlv(Tag.FAULT_ACK_SEQ, self._last_fault_seq)]
        )
        numbered = self._parse(
            "READ FAULTS", lambda: [fault_from_tlv(f) for f in record.nested(Tag.FAULT)]
        )
        numbered.sort(key=lambda pair: pair[0])
        if numbered:
            # Acknowledged with the next call; a terminal only ever sends faults above the
            # acknowledged number, so whatever arrives is new (at least once, not exactly).
            self._last_fault_seq = numbered[-1][0]
        return [fault for _, fault in numbered]

    async def print_line(self, text: str) -> None:
        """Print one line on the receipt printer."""
        await self._call(Instruction.PRINT_LINE, [text_tlv(Tag.PRINT_TEXT, text)])

    async def sync_clock(self, now: datetime) -> float:
        """Set the terminal's clock to ``now``; returns its previous offset in seconds."""
        record = await self._call(
            Instruction.SYNC_CLOCK, [sint_tlv(Tag.UNIX_TIME_MS, round(now.timestamp() * 1000))]
        )
        previous = self._parse("SYNC CLOCK", lambda: record.sint(Tag.PREVIOUS_OFFSET_MS))
        return 0.0 if previous is None else previous / 1000

    async def reboot(self) -> None:
        """Restart the terminal.

        Refused (``TerminalRefusedError``, result ``f2`` / ``f3``) during a transaction or
        while the batch is unsettled: a reboot must never interrupt the merchant's trading.
        """
        await self._call(Instruction.REBOOT)

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """Run one diagnostic on the terminal and return its outcome."""
        record = await self._call(
            Instruction.RUN_DIAGNOSTIC,
            [uint_tlv(Tag.DIAGNOSTIC_TEST, test)],
            reply_timeout=DIAGNOSTIC_REPLY_TIMEOUT_S,
        )
        return self._parse("RUN DIAGNOSTIC", lambda: diagnostic_from_tlv(record))

    async def read_counters(self) -> TerminalCounters:
        """Lifetime wear counters."""
        record = await self._call(Instruction.READ_COUNTERS)
        return self._parse("READ COUNTERS", lambda: counters_from_tlv(record))

    async def collect_logs(
        self, start: datetime, end: datetime, *, max_bytes: int = DEFAULT_MAX_LOG_BYTES
    ) -> CollectedLogs:
        """The log lines written in ``[start, end)``, fetched chunk by chunk (unscrubbed).

        The terminal renders the extract once, on the request at offset 0, and serves the
        following chunks from it, so lines written meanwhile do not shift the offsets.
        """
        if end < start:
            raise ValueError("collect_logs: end is before start")
        data = bytearray()
        total: int | None = None
        while total is None or len(data) < min(total, max_bytes):
            items = log_request_to_tlv(start, end, len(data))
            record = await self._call(Instruction.COLLECT_LOGS, items)
            chunk = self._parse("COLLECT LOGS", functools.partial(log_chunk_from_tlv, record))
            if total is not None and chunk.total != total:
                raise MalformedReplyError(
                    f"COLLECT LOGS: extract size changed from {total} to {chunk.total} bytes"
                )
            total = chunk.total
            if not chunk.data and len(data) < total:
                raise MalformedReplyError(f"COLLECT LOGS: empty chunk at offset {len(data)}")
            data += chunk.data
        truncated = total > max_bytes
        if truncated:
            # Cut at the last complete line, so no line (or card number) arrives half.
            del data[data.rfind(b"\n", 0, max_bytes) + 1 :]
        text = bytes(data).decode("utf-8", errors="replace")
        return CollectedLogs(text=text, start=start, end=end, truncated=truncated)

    async def backup_config(self) -> ConfigBackup:
        """Every exportable configuration parameter; the terminal withholds secret ones."""
        record = await self._call(Instruction.BACKUP_CONFIG)
        return self._parse("BACKUP CONFIG", lambda: backup_from_tlv(record))

    async def restore_config(self, params: dict[str, str]) -> ConfigRestoreResult:
        """Apply ``params``; unknown, read-only and secret keys come back rejected."""
        record = await self._call(Instruction.RESTORE_CONFIG, params_to_tlv(params))
        return self._parse("RESTORE CONFIG", lambda: restore_result_from_tlv(record))

    async def firmware_status(self) -> FirmwareSlots:
        """The A/B slots, the active one and whether it awaits confirmation."""
        record = await self._call(Instruction.FIRMWARE_STATUS)
        return self._parse("FIRMWARE STATUS", lambda: slots_from_tlv(record))

    async def firmware_begin(self, size: int, sha256: bytes, version: str) -> FirmwareTransfer:
        """Start (or resume) an image transfer into the inactive slot."""
        info = FirmwareImageInfo(size, sha256, version)
        record = await self._call(Instruction.FIRMWARE_BEGIN, begin_to_tlv(info))
        transfer = self._parse("FIRMWARE BEGIN", lambda: transfer_from_tlv(record))
        if transfer.block_size > MAX_FIRMWARE_BLOCK_BYTES or transfer.resume_offset > size:
            raise MalformedReplyError(
                f"FIRMWARE BEGIN: block size {transfer.block_size} or resume offset "
                f"{transfer.resume_offset} out of range"
            )
        return transfer

    async def firmware_write_block(self, offset: int, data: bytes) -> None:
        """Write one block of the image at ``offset``."""
        record = await self._call(Instruction.FIRMWARE_BLOCK, block_to_tlv(offset, data))
        expected = self._parse("FIRMWARE BLOCK", lambda: record.uint(Tag.FW_OFFSET))
        if expected is not None and expected != offset + len(data):
            raise MalformedReplyError(
                f"FIRMWARE BLOCK: terminal expects offset {expected}, not {offset + len(data)}"
            )

    async def firmware_verify(self) -> None:
        """The terminal checks the image against its SHA-256; refused on a mismatch."""
        await self._call(Instruction.FIRMWARE_VERIFY, reply_timeout=FIRMWARE_VERIFY_TIMEOUT_S)

    async def firmware_activate(self) -> None:
        """Reboot into the verified slot, on trial until confirmed."""
        await self._call(Instruction.FIRMWARE_ACTIVATE, reply_timeout=FIRMWARE_VERIFY_TIMEOUT_S)

    async def firmware_confirm(self) -> None:
        """Keep the new slot for good."""
        await self._call(Instruction.FIRMWARE_CONFIRM)

    async def firmware_rollback(self) -> None:
        """Go back to the previous slot."""
        await self._call(Instruction.FIRMWARE_ROLLBACK, reply_timeout=FIRMWARE_VERIFY_TIMEOUT_S)

    async def _call(
        self,
        instruction: Instruction,
        items: list[Tlv] | None = None,
        *,
        reply_timeout: float | None = None,
    ) -> TlvRecord:
        reply = await self.link.request(
            request(instruction, items or []),
            reply_timeout=max(reply_timeout or 0.0, self.reply_timeout),
        )
        name = instruction.name.replace("_", " ")
        if reply.is_failure:
            raise TerminalRefusedError(name, reply.ins, _meaning(reply.ins))
        if not reply.is_success:
            raise MalformedReplyError(f"{name}: expected 80 00 or 84 xx, got {_describe(reply)}")
        return self._parse(name, lambda: TlvRecord.parse(reply.data))

    @staticmethod
    def _parse(command: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except TlvError as exc:
            raise MalformedReplyError(f"{command}: {exc}") from exc


def _meaning(result_code: int) -> str:
    try:
        return RESULT_MEANINGS[ResultCode(result_code)]
    except ValueError:
        return "unknown result code"


def _describe(reply: Apdu) -> str:
    return f"{reply.cls:02X} {reply.ins:02X}"
