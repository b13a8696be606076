"""Driver for terminals that speak the posfleet maintenance command set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from posfleet.agent.drivers.base import (
    DetectedFault,
    DiagnosticResult,
    DiagnosticTest,
    TerminalIdentity,
)
from posfleet.agent.drivers.errors import MalformedReplyError, TerminalRefusedError
from posfleet.agent.drivers.maintenance_protocol import (
    RESULT_MEANINGS,
    Instruction,
    ResultCode,
    Tag,
    diagnostic_from_tlv,
    fault_from_tlv,
    health_from_tlv,
    identity_from_tlv,
    request,
)
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.link import Link
from posfleet.agent.serial.tlv import Tlv, TlvRecord, sint_tlv, text_tlv, uint_tlv
from posfleet.contract import HealthMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REPLY_TIMEOUT_S = 10.0
DIAGNOSTIC_REPLY_TIMEOUT_S = 60.0
"""A printer test or a host ping takes longer than reading a register."""


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

    async def read_health(self) -> HealthMetrics:
        """Every metric the terminal reports; invalid sections are dropped and counted."""
        record = await self._call(Instruction.READ_HEALTH)
        metrics, rejected = self._parse("READ HEALTH", lambda: health_from_tlv(record))
        if rejected:
            self.rejected_metrics += len(rejected)
            log.warning("terminal sent invalid health metrics, left out: %s", "; ".join(rejected))
        return metrics

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
        """Restart the terminal; refused (``TerminalRefusedError``) during a transaction."""
        await self._call(Instruction.REBOOT)

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """Run one diagnostic on the terminal and return its outcome."""
        record = await self._call(
            Instruction.RUN_DIAGNOSTIC,
            [uint_tlv(Tag.DIAGNOSTIC_TEST, test)],
            reply_timeout=max(self.reply_timeout, DIAGNOSTIC_REPLY_TIMEOUT_S),
        )
        return self._parse("RUN DIAGNOSTIC", lambda: diagnostic_from_tlv(record))

    async def _call(
        self,
        instruction: Instruction,
        items: list[Tlv] | None = None,
        *,
        reply_timeout: float | None = None,
    ) -> TlvRecord:
        reply = await self.link.request(
            request(instruction, items or []),
            reply_timeout=reply_timeout or self.reply_timeout,
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
