"""Sans-IO: answer a maintenance request APDU for a simulated terminal."""

from __future__ import annotations

import logging

from posfleet.agent.drivers.base import DiagnosticTest
from posfleet.agent.drivers.maintenance_actions import (
    backup_to_tlv,
    begin_from_tlv,
    block_from_tlv,
    counters_to_tlv,
    diagnostic_to_tlv,
    log_chunk_to_tlv,
    log_request_from_tlv,
    params_from_tlv,
    restore_result_to_tlv,
    slots_to_tlv,
    transfer_to_tlv,
)
from posfleet.agent.drivers.maintenance_codes import (
    MAINTENANCE_CLASS,
    MAX_FAULTS_PER_REPLY,
    Instruction,
    ResultCode,
    Tag,
)
from posfleet.agent.drivers.maintenance_protocol import (
    fault_to_tlv,
    health_to_tlv,
    identity_to_tlv,
)
from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.agent.serial.errors import TlvError
from posfleet.agent.serial.tlv import Tlv, TlvRecord, encode_tlv, sint_tlv, uint_tlv
from posfleet.simulator.errors import TerminalRefusal
from posfleet.simulator.self_tests import run_diagnostic
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
            return self._refuse(ResultCode.NOT_SUPPORTED)
        try:
            instruction = Instruction(req.ins)
        except ValueError:
            return self._refuse(ResultCode.NOT_SUPPORTED)
        try:
            return success(encode_tlv(self._dispatch(instruction, TlvRecord.parse(req.data))))
        except TlvError as exc:
            log.info("%s: malformed %s request: %s", self.terminal.identity.serial, req, exc)
            return self._refuse(ResultCode.MALFORMED_REQUEST)
        except TerminalRefusal as refusal:
            log.info("%s: refused %s: %s", self.terminal.identity.serial, req, refusal)
            return self._refuse(refusal.code)

    def _refuse(self, code: ResultCode) -> Apdu:
        self.refused += 1
        return failure(code)

    def _dispatch(self, instruction: Instruction, data: TlvRecord) -> list[Tlv]:
        t = self.terminal
        match instruction:
            case Instruction.IDENTIFY:
                return identity_to_tlv(t.identity)
            case Instruction.READ_HEALTH:
                return health_to_tlv(t.health())
            case Instruction.READ_FAULTS:
                pending = t.pending_faults(data.uint(Tag.FAULT_ACK_SEQ) or 0)
                return [fault_to_tlv(seq, f) for seq, f in pending[:MAX_FAULTS_PER_REPLY]]
            case Instruction.READ_COUNTERS:
                return counters_to_tlv(t.counters())
            case Instruction.PRINT_LINE:
                text = data.text(Tag.PRINT_TEXT)
                if text is None:
                    raise TlvError("PRINT LINE without text")
                if not t.print_line(text):
                    raise TerminalRefusal(ResultCode.PRINTER_NOT_READY)
                return []
            case Instruction.SYNC_CLOCK:
                if data.sint(Tag.UNIX_TIME_MS) is None:
                    raise TlvError("SYNC CLOCK without the time")
                previous = t.sync_clock()
                return [sint_tlv(Tag.PREVIOUS_OFFSET_MS, round(previous * 1000))]
            case Instruction.REBOOT:
                t.reboot()
                return []
            case Instruction.RUN_DIAGNOSTIC:
                try:
                    test = DiagnosticTest(data.uint(Tag.DIAGNOSTIC_TEST) or 0)
                except ValueError as exc:
                    raise TlvError("unknown or missing diagnostic test") from exc
                return diagnostic_to_tlv(run_diagnostic(t, test))
            case Instruction.COLLECT_LOGS:
                start, end, offset = log_request_from_tlv(data)
                t.advance()
                return log_chunk_to_tlv(t.journal.chunk(start.timestamp(), end.timestamp(), offset))
            case Instruction.BACKUP_CONFIG:
                return backup_to_tlv(t.config.backup(data.texts(Tag.CONFIG_KEY_FILTER) or None))
            case Instruction.RESTORE_CONFIG:
                result = t.config.restore(params_from_tlv(data))
                t.log(f"config restored: {len(result.applied)} applied, {len(result.rejected)} not")
                return restore_result_to_tlv(result)
            case _:
                return self._firmware(instruction, data)

    def _firmware(self, instruction: Instruction, data: TlvRecord) -> list[Tlv]:
        t = self.terminal
        match instruction:
            case Instruction.FIRMWARE_STATUS:
                return slots_to_tlv(t.firmware.status())
            case Instruction.FIRMWARE_BEGIN:
                return transfer_to_tlv(t.firmware.begin(begin_from_tlv(data)))
            case Instruction.FIRMWARE_BLOCK:
                offset, block = block_from_tlv(data)
                return [uint_tlv(Tag.FW_OFFSET, t.firmware.write(offset, block))]
            case Instruction.FIRMWARE_VERIFY:
                t.firmware.verify()
                return []
            case Instruction.FIRMWARE_ACTIVATE:
                t.activate_firmware()
                return []
            case Instruction.FIRMWARE_CONFIRM:
                t.firmware.confirm()
                t.log(f"firmware {t.firmware.active_version} confirmed")
                return []
            case Instruction.FIRMWARE_ROLLBACK:
                t.rollback_firmware()
                return []
        raise TerminalRefusal(ResultCode.NOT_SUPPORTED)
