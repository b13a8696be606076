"""``posfleet-agent trace decode``: turn a hex dump of a capture into one JSON per event.

For field engineers with a line sniffer: paste what it captured (plain hex, ``0x``-prefixed
bytes, ``xxd`` or ``hexdump -C`` output) and get every frame, ACK, NAK and error, with
the APDU split into class, instruction, length and data, and whether the CRC matched.
A capture of ZVT over TCP (:func:`decode_tcp_capture`) holds unframed APDUs instead: one
record per APDU, without CRC.
A ZVT message also gets its decoded fields under ``zvt`` (software version, terminal status
and result code with their meanings, amount, receipt, card type ...; never card data).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from posfleet.agent.drivers.maintenance_codes import (
    MAINTENANCE_CLASS,
    RESULT_MEANINGS,
    Instruction,
    ResultCode,
)
from posfleet.agent.drivers.zvt_bitmaps import ZvtDecodeError
from posfleet.agent.drivers.zvt_messages import decode_message
from posfleet.agent.drivers.zvt_protocol import Control
from posfleet.agent.errors import AgentError
from posfleet.agent.serial.apdu import LONG_LENGTH_MARKER, Apdu, ApduStream
from posfleet.agent.serial.errors import ApduError
from posfleet.agent.serial.frames import (
    AckReceived,
    BadCrc,
    DecoderEvent,
    FrameAborted,
    FrameDecoder,
    FrameReceived,
    GarbageSkipped,
    NakReceived,
)


class HexDumpError(AgentError):
    """Text that is not a hex dump; the message names the line."""


_OFFSET_COLON = re.compile(r"^\s*[0-9A-Fa-f]+:\s*")
_HEXDUMP_C = re.compile(r"^\s*[0-9A-Fa-f]{6,8}\s+(.*?)\s*\|.*\|\s*$")
_XXD_ASCII = re.compile(r"\s{2,}\S.*$")
_TOKEN_SEPARATORS = re.compile(r"[\s,;]+")


def parse_hex_dump(text: str) -> bytes:
    """The bytes in ``text``: spaces, newlines, ``0x`` prefixes and dump offsets are ignored.

    Raises :class:`HexDumpError` naming the first line that holds something else.
    """
    out = bytearray()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        hexdump_c = _HEXDUMP_C.match(line)
        if hexdump_c is not None:
            line = hexdump_c.group(1)
        elif _OFFSET_COLON.match(line):
            line = _XXD_ASCII.sub("", _OFFSET_COLON.sub("", line, count=1))
        digits = "".join(
            token[2:] if token[:2] in ("0x", "0X") else token
            for token in _TOKEN_SEPARATORS.split(line.strip())
        )
        if len(digits) % 2 or re.fullmatch(r"[0-9A-Fa-f]*", digits) is None:
            raise HexDumpError(f"line {number} is not hex bytes: {raw.strip()[:60]!r}")
        out += bytes.fromhex(digits)
    return bytes(out)


def describe_apdu(apdu: Apdu) -> str:
    """A name for an APDU a field engineer recognises."""
    if apdu.is_success:
        return "positive completion"
    if apdu.is_failure:
        try:
            return f"negative completion: {RESULT_MEANINGS[ResultCode(apdu.ins)]}"
        except ValueError:
            return f"negative completion: result code 0x{apdu.ins:02X}"
    if apdu.cls == MAINTENANCE_CLASS:
        try:
            return "maintenance " + Instruction(apdu.ins).name.replace("_", " ").lower()
        except ValueError:
            return "maintenance: unknown instruction"
    try:
        return "zvt " + Control(apdu.cls << 8 | apdu.ins).name.replace("_", " ").lower()
    except ValueError:
        return "unknown"


def _apdu_fields(raw: bytes, errors: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The APDU's class, instruction, length, data, name and ZVT fields; errors added."""
    record: dict[str, Any] = {}
    if len(raw) >= 3:
        long_form = raw[2] == LONG_LENGTH_MARKER
        record |= {
            "class": f"{raw[0]:02x}",
            "instruction": f"{raw[1]:02x}",
            "length_form": "long" if long_form else "short",
        }
    try:
        apdu = Apdu.decode(raw)
    except ApduError as exc:
        errors = [*errors, str(exc)]
        record |= {"length": max(0, len(raw) - 3), "data": raw[3:].hex()}
    else:
        record |= {
            "length": len(apdu.data),
            "data": apdu.data.hex(),
            "name": describe_apdu(apdu),
        }
        if apdu.cls != MAINTENANCE_CLASS and not apdu.is_success:
            try:
                record["zvt"] = decode_message(apdu).summary()
            except ZvtDecodeError as exc:
                errors = [*errors, str(exc)]
    return record, errors


def _frame(raw: bytes, offset: int, crc_ok: bool, errors: list[str]) -> dict[str, Any]:
    fields, errors = _apdu_fields(raw, errors)
    return {"type": "frame", "offset": offset} | fields | {"crc_ok": crc_ok, "errors": errors}


def _record(event: DecoderEvent, offset: int) -> dict[str, Any]:
    if isinstance(event, FrameReceived):
        return _frame(event.apdu, offset, True, [])
    if isinstance(event, BadCrc):
        why = f"CRC is {event.received:04x}, the frame's bytes give {event.expected:04x}"
        return _frame(event.apdu, offset, False, [why])
    if isinstance(event, AckReceived):
        return {"type": "ack", "offset": offset}
    if isinstance(event, NakReceived):
        return {"type": "nak", "offset": offset}
    if isinstance(event, FrameAborted):
        return {
            "type": "error",
            "offset": offset,
            "errors": [f"frame dropped after {event.length} bytes: {event.reason}"],
        }
    assert isinstance(event, GarbageSkipped)
    return {
        "type": "error",
        "offset": offset,
        "errors": [f"{event.count} byte(s) outside any frame skipped"],
    }


def decode_capture(data: bytes) -> Iterator[dict[str, Any]]:
    """One record per frame, ACK, NAK or error in ``data``, in order.

    ``offset`` is where the event ends in the capture (the byte that completed it).
    """
    decoder = FrameDecoder()
    garbage = 0
    garbage_end = 0
    for index in range(len(data)):
        for event in decoder.feed(data[index : index + 1]):
            if isinstance(event, GarbageSkipped):
                # Fed byte by byte, the decoder reports garbage a byte at a time: merge a
                # run of it into one record.
                garbage += event.count
                garbage_end = index
                continue
            if garbage:
                yield _record(GarbageSkipped(garbage), garbage_end)
                garbage = 0
            yield _record(event, index)
    if garbage:
        yield _record(GarbageSkipped(garbage), garbage_end)
    if decoder.in_frame:
        yield {
            "type": "error",
            "offset": len(data) - 1,
            "errors": ["capture ends inside a frame"],
        }


def decode_tcp_capture(data: bytes) -> Iterator[dict[str, Any]]:
    """One ``apdu`` record per APDU of a ZVT-over-TCP capture (one direction or both, as
    the bytes passed the wire), in order; ``offset`` is where the APDU ends.

    The stream has no framing to resynchronise on: the length fields are its only
    boundaries, so a capture that starts inside an APDU decodes as nonsense from there.
    """
    stream = ApduStream()
    end = 0
    for raw in stream.feed(data):
        end += len(raw)
        fields, errors = _apdu_fields(raw, [])
        yield {"type": "apdu", "offset": end - 1} | fields | {"errors": errors}
    if stream.pending:
        yield {
            "type": "error",
            "offset": len(data) - 1,
            "errors": [f"capture ends inside an APDU ({stream.pending} byte(s) of it)"],
        }
