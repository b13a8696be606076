"""Sans-IO: a simulated terminal answering ZVT Status Enquiry and Diagnosis, as an ECR sees it.

A Status Enquiry gets ``80 00 00``, then the Completion ``06 0F`` a real terminal sends:
its software version (LLLVAR, 40 ASCII bytes), the terminal status byte (``00`` ready, else
the most urgent fault's code, e.g. ``CC`` printer not ready) and a TLV container (BMP
``06``) holding the status as a display text (tag ``24``, line ``07``). A Diagnosis gets
``80 00 00``, Status-Information ``04 0F`` (result code BMP 27 and terminal id BMP 29),
then Completion ``06 0F``; one that cannot reach the host ends with Abort ``06 1E <code>``
instead. The ECR answers each of the terminal's messages with
``80 00 00``; the serial endpoint sends the next one when it has.
"""

from __future__ import annotations

from posfleet.agent.drivers.zvt_bitmaps import llvar, tlv_container
from posfleet.agent.drivers.zvt_protocol import Bmp, Control, control, encode_bitmaps
from posfleet.agent.drivers.zvt_result_codes import terminal_status
from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.simulator.faults import FAULT_EVENTS, ZVT_HOST_FAULTS, ZVT_STATUS_PRIORITY
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.simulator.zvt_ecr_session import ecr_reply

NOT_SUPPORTED = 0x83
SOFTWARE_VERSION_BYTES = 40


def _message(ctrl: Control, data: bytes = b"") -> Apdu:
    return Apdu(ctrl >> 8, ctrl & 0xFF, data)


class ZvtResponder:
    """Turns ZVT commands into the terminal's message sequence."""

    def __init__(self, terminal: SimulatedTerminal) -> None:
        self.terminal = terminal

    @property
    def terminal_id(self) -> bytes:
        """BMP 29: eight digits from the serial number."""
        digits = "".join(c for c in self.terminal.identity.serial if c.isdigit())
        return bytes.fromhex(digits[-8:].rjust(8, "0"))

    def status_code(self) -> int:
        """The one code a ZVT status has room for: the most urgent active fault's."""
        self.terminal.advance()
        for fault in ZVT_STATUS_PRIORITY:
            if fault in self.terminal.active:
                return FAULT_EVENTS[fault][4] or 0x00
        return 0x00

    def handle(self, req: Apdu) -> Apdu | list[Apdu]:
        """Everything the terminal sends for ``req``: the acknowledgement first."""
        kind = control(req)
        if req.is_success:
            return []  # the ECR's answer to one of our messages
        if (session_reply := ecr_reply(self.terminal, req)) is not None:
            return session_reply
        if kind == Control.STATUS_ENQUIRY:
            return [success(), self._status_completion(self.status_code())]
        if kind == Control.DIAGNOSIS:
            for fault in ZVT_HOST_FAULTS:
                if fault in self.terminal.active:
                    code = FAULT_EVENTS[fault][4] or 0xFF
                    return [success(), _message(Control.ABORT, bytes((code,)))]
            return [success(), self._status(0x00), self._completion()]
        return failure(NOT_SUPPORTED)

    def _status(self, code: int) -> Apdu:
        fields: dict[int, bytes] = {
            Bmp.RESULT_CODE: bytes((code,)),
            Bmp.TERMINAL_ID: self.terminal_id,
        }
        return _message(Control.STATUS_INFORMATION, encode_bitmaps(fields))

    @property
    def software_version(self) -> bytes:
        """The 40 ASCII bytes a real terminal names its software with (space-padded)."""
        identity = self.terminal.identity
        text = f"POSFLEET-SIM {identity.model} {identity.firmware_version}"
        raw = text.encode("ascii", "replace")[:SOFTWARE_VERSION_BYTES]
        return raw.ljust(SOFTWARE_VERSION_BYTES, b" ")

    def _status_completion(self, code: int) -> Apdu:
        text = terminal_status(code).meaning.encode("ascii", "replace")[:120]
        line = bytes((0x07, len(text))) + text
        display = bytes((0x24, len(line))) + line
        data = llvar(self.software_version, 3) + bytes((code,)) + tlv_container(display)
        return _message(Control.COMPLETION, data)

    def _completion(self) -> Apdu:
        return _message(Control.COMPLETION, encode_bitmaps({Bmp.TERMINAL_ID: self.terminal_id}))
