"""Sans-IO: answer a maintenance request APDU for a simulated terminal."""

from __future__ import annotations

import logging

from posfleet.agent.drivers.base import DiagnosticTest
from posfleet.agent.drivers.maintenance_protocol import (
    MAINTENANCE_CLASS,
    MAX_FAULTS_PER_REPLY,
    Instruction,
    ResultCode,
    Tag,
    diagnostic_to_tlv,
    fault_to_tlv,
    health_to_tlv,
    identity_to_tlv,
)
from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.tlv import TlvRecord, encode_tlv, sint_tlv
from posfleet.simulator.terminal_model import SimulatedTerminal

log = logging.getLogger(__name__)


class MaintenanceResponder:
    """Turns requests into replies against one :class:`SimulatedTerminal`."""

    def __init__(self, terminal: SimulatedTerminal) -> None:
        self.terminal = terminal
        self.refused = 0

    def handle(self, req: Apdu) -> Apdu:
        """The reply to ``req``; malformed or unknown requests get a negative completion."""
        if req.cls != MAINTENANCE_CLASS:
            return self._refuse(ResultCode.NOT_SUPPORTED, req)
        try:
            instruction = Instruction(req.ins)
        except ValueError:
            return self._refuse(ResultCode.NOT_SUPPORTED, req)
        try:
            return self._dispatch(instruction, TlvRecord.parse(req.data))
        except TlvError as exc:
            log.info("%s: malformed %s request: %s", self.terminal.identity.serial, req, exc)
            return self._refuse(ResultCode.MALFORMED_REQUEST, req)

    def _refuse(self, code: ResultCode, req: Apdu) -> Apdu:
        self.refused += 1
        return failure(code)

    def _dispatch(self, instruction: Instruction, data: TlvRecord) -> Apdu:
        t = self.terminal
        match instruction:
            case Instruction.IDENTIFY:
                return success(encode_tlv(identity_to_tlv(t.identity)))
            case Instruction.READ_HEALTH:
                return success(encode_tlv(health_to_tlv(t.health())))
            case Instruction.READ_FAULTS:
                pending = t.pending_faults(data.uint(Tag.FAULT_ACK_SEQ) or 0)
                records = [fault_to_tlv(seq, f) for seq, f in pending[:MAX_FAULTS_PER_REPLY]]
                return success(encode_tlv(records))
            case Instruction.PRINT_LINE:
                text = data.text(Tag.PRINT_TEXT)
                if text is None:
                    raise TlvError("PRINT LINE without text")
                if not t.print_line(text):
                    return failure(ResultCode.PRINTER_NOT_READY)
                return success()
            case Instruction.SYNC_CLOCK:
                if data.sint(Tag.UNIX_TIME_MS) is None:
                    raise TlvError("SYNC CLOCK without the time")
                previous = t.sync_clock()
                return success(sint_tlv(Tag.PREVIOUS_OFFSET_MS, round(previous * 1000)).encode())
            case Instruction.REBOOT:
                health = t.health()
                if health.transactions is not None and health.transactions.in_progress:
                    return failure(ResultCode.BUSY)
                t.reboot()
                return success()
            case Instruction.RUN_DIAGNOSTIC:
                try:
                    test = DiagnosticTest(data.uint(Tag.DIAGNOSTIC_TEST) or 0)
                except ValueError as exc:
                    raise TlvError("unknown or missing diagnostic test") from exc
                return success(encode_tlv(diagnostic_to_tlv(t.run_diagnostic(test))))
