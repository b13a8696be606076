"""Driver for unmodified ECR terminals over ZVT: Status Enquiry and Diagnosis only.

What ZVT tells an outsider is little, so the health this driver reports is partial:

- ``tamper`` (PIN pad defective, ``89`` / ``ED``), ``printer`` (``CC`` not ready, else ok)
  and ``keys`` (``85`` missing, ``74`` DUKPT exhausted) come from the Status Enquiry: from
  the terminal status byte of its Completion, where real terminals put it (after the
  software version), or from BMP ``27`` of a Status Information, where older ones do;
- acquirer-host trouble (``A3``, ``A1``) only shows in a Diagnosis, which makes the terminal
  call its host, so it runs at most every ``diagnosis_interval_s``; it becomes a fault
  event, not a ``network`` metric (ZVT does not say which network the terminal uses);
- battery, temperature, reader counters, storage figures, clock offset and transaction
  counters are not available and are left out.

A terminal shows one result code at a time, so a fault is reported when its code appears;
a code that stays is not reported again until it has gone away.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from posfleet.agent.drivers.base import DetectedFault, HealthData, TerminalIdentity
from posfleet.agent.drivers.errors import MalformedReplyError, TerminalRefusedError
from posfleet.agent.drivers.zvt_messages import ZvtMessage, decode_message
from posfleet.agent.drivers.zvt_protocol import (
    DEFAULT_PASSWORD,
    Control,
    control,
    diagnosis,
    status_enquiry,
)
from posfleet.agent.drivers.zvt_result_codes import fault_for
from posfleet.agent.serial.apdu import Apdu, success
from posfleet.agent.serial.link import ConversationLink, Link
from posfleet.contract import PrinterStatus

if TYPE_CHECKING:
    from posfleet.contract import HealthMetrics

log = logging.getLogger(__name__)

T4_COMPLETION_S = 180.0
"""ZVT's T4: how long a terminal may take to complete a command."""
DEFAULT_DIAGNOSIS_INTERVAL_S = 900.0
NOT_SUPPORTED = 0x83
MAX_MESSAGES = 64
"""A conversation longer than this is a terminal gone wrong, not a long receipt."""


_NOT_IN_VERSION = re.compile(r"[^A-Za-z0-9._+~-]+")


def version_label(software_version: str | None) -> str:
    """The terminal's software version as an inventory firmware version (64 safe chars)."""
    label = _NOT_IN_VERSION.sub("_", software_version or "").strip("_")[:64]
    return label or "unknown"


@dataclass
class ZvtOutcome:
    """What one command's conversation ended with."""

    result_code: int
    terminal_id: str | None = None
    printed: list[str] = field(default_factory=list)
    software_version: str | None = None
    terminal_status: int | None = None
    """The status byte of a Status Enquiry's Completion, if the terminal sent one."""

    @property
    def status_code(self) -> int:
        """How the terminal is: its status byte if it sent one, else the result code."""
        return self.result_code if self.terminal_status is None else self.terminal_status


class ZvtDriver:
    """A :class:`~posfleet.agent.drivers.base.TerminalDriver` over ZVT (no remote actions).

    ZVT has no firmware transfer, so this driver is no ``SupportsRemoteActions`` and the
    firmware updater answers every offer ``rejected``: "driver zvt cannot install firmware".
    """

    def __init__(
        self,
        link: Link,
        *,
        password: str = DEFAULT_PASSWORD,
        reply_timeout: float = 10.0,
        completion_timeout: float = T4_COMPLETION_S,
        diagnosis_interval_s: float = DEFAULT_DIAGNOSIS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(link, ConversationLink):
            raise TypeError("the ZVT driver needs a link that can receive and send (SerialLink)")
        self.link: ConversationLink = link
        self.password = password
        self.reply_timeout = reply_timeout
        self.completion_timeout = completion_timeout
        self.diagnosis_interval_s = diagnosis_interval_s
        self._clock = clock
        self._last_diagnosis: float | None = None
        self.diagnosis_supported = True
        self._status_code = 0x00
        self._reported: dict[str, int] = {"status": 0x00, "diagnosis": 0x00}
        self._lock = asyncio.Lock()

    async def identify(self) -> TerminalIdentity:
        """Terminal id and software version: all ZVT reveals (no model, no hardware).

        A real terminal's Status Enquiry names its software but not its terminal id; the id
        then comes from the Status Information of a Diagnosis, once, at start-up.
        """
        outcome = await self._converse(status_enquiry(self.password))
        tid = outcome.terminal_id
        if tid is None and self.diagnosis_supported:
            try:
                tid = (await self._converse(diagnosis())).terminal_id
            except TerminalRefusedError as exc:
                if exc.result_code != NOT_SUPPORTED:
                    raise
                self.diagnosis_supported = False
        tid = tid or "unknown"
        return TerminalIdentity(
            model="ZVT terminal",
            serial=tid,
            hw_revision="",
            firmware_version=version_label(outcome.software_version),
            capabilities=["zvt"],
        )

    async def read_health_data(self) -> HealthData:
        """The partial health a Status Enquiry gives (see the module docstring)."""
        code = (await self._converse(status_enquiry(self.password))).status_code
        self._status_code = code
        keys: HealthData = {"key_missing": code == 0x85}
        if code == 0x74:
            keys["dukpt_remaining"] = 0
        return {
            "printer": {"status": PrinterStatus.FAULT if code == 0xCC else PrinterStatus.OK},
            "keys": keys,
            "tamper": code in (0x89, 0xED),
        }

    async def read_health(self) -> HealthMetrics:
        """:meth:`read_health_data` as the contract's model (imports pydantic)."""
        from posfleet.contract import HealthMetrics

        return HealthMetrics.model_validate(await self.read_health_data())

    async def read_faults(self) -> list[DetectedFault]:
        """Faults whose result code appeared since the previous call."""
        faults: list[DetectedFault] = []
        status = await self._converse(status_enquiry(self.password))
        self._status_code = status.status_code
        faults += self._new_fault("status", status.status_code, status=True)
        now = self._clock()
        due = (
            self._last_diagnosis is None or now - self._last_diagnosis >= self.diagnosis_interval_s
        )
        if self.diagnosis_supported and due:
            self._last_diagnosis = now
            try:
                diag = await self._converse(diagnosis())
            except TerminalRefusedError as exc:
                # Some terminals do not offer Diagnosis to the ECR: keep the status faults
                # and stop asking, rather than failing every poll.
                if exc.result_code == NOT_SUPPORTED:
                    log.warning("terminal does not support ZVT Diagnosis; host checks are off")
                    self.diagnosis_supported = False
                    return faults
                raise
            faults += self._new_fault("diagnosis", diag.result_code)
        return faults

    async def run_diagnosis(self) -> ZvtOutcome:
        """Run a Diagnosis now (the terminal calls its host); returns how it ended."""
        self._last_diagnosis = self._clock()
        return await self._converse(diagnosis())

    def _new_fault(self, source: str, code: int, *, status: bool = False) -> list[DetectedFault]:
        previous, self._reported[source] = self._reported[source], code
        if code == previous:
            return []
        fault = fault_for(code, status=status)
        return [] if fault is None else [fault]

    async def _converse(self, command: Apdu) -> ZvtOutcome:
        name = Control(control(command)).name.replace("_", " ").lower()
        async with self._lock:
            reply = await self.link.request(command, reply_timeout=self.reply_timeout)
            if reply.is_failure:
                raise TerminalRefusedError(name, reply.ins, "negative acknowledgement")
            if not reply.is_success:
                raise MalformedReplyError(f"{name}: expected 80 00, got {reply}")
            outcome = ZvtOutcome(result_code=0x00)
            for _ in range(MAX_MESSAGES):
                message = await self.link.receive(reply_timeout=self.completion_timeout)
                await self.link.send(success())
                kind = control(message)
                if kind in (Control.STATUS_INFORMATION, Control.COMPLETION):
                    self._take(outcome, decode_message(message))
                    if kind == Control.COMPLETION:
                        return outcome
                elif kind == Control.ABORT:
                    outcome.result_code = message.data[0] if message.data else 0xFF
                    return outcome
                elif kind == Control.PRINT_LINE:
                    # 06 D1: one attribute byte, then the text.
                    outcome.printed.append(message.data[1:].decode("latin-1", "replace"))
                elif kind != Control.INTERMEDIATE_STATUS:
                    log.debug("%s: ignoring ZVT message %04X", name, kind)
            raise MalformedReplyError(f"{name}: no completion after {MAX_MESSAGES} messages")

    @staticmethod
    def _take(outcome: ZvtOutcome, message: ZvtMessage) -> None:
        if message.result_code is not None:
            outcome.result_code = message.result_code
        if message.terminal_id is not None:
            outcome.terminal_id = message.terminal_id
        if message.terminal_status is not None:
            outcome.terminal_status = message.terminal_status
        if message.software_version is not None:
            outcome.software_version = message.software_version
