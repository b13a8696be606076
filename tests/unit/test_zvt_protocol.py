"""The ZVT command slice: byte-exact commands, bitmap parsing, result codes to faults."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posfleet.agent.drivers.zvt_protocol import (
    Bmp,
    diagnosis,
    encode_bitmaps,
    fault_for,
    parse_bitmaps,
    status_enquiry,
)
from posfleet.agent.serial.frames import encode_frame
from posfleet.contract import Severity


def test_commands_are_byte_exact() -> None:
    assert status_enquiry().encode().hex(" ") == "05 01 03 00 00 00"
    assert status_enquiry("123456").encode().hex(" ") == "05 01 03 12 34 56"
    assert diagnosis().encode().hex(" ") == "06 70 00"
    assert encode_frame(diagnosis().encode()).hex(" ").startswith("10 02 06 70 00 10 03")


def test_status_information_fields_are_parsed() -> None:
    # result code 0xCC, terminal id 52500117, TLV container of 3 bytes, currency EUR
    data = bytes.fromhex("27cc 2952500117 0603 0a0105 490978".replace(" ", ""))
    parsed = parse_bitmaps(data)
    assert parsed.result_code == 0xCC and parsed.terminal_id == "52500117"
    assert parsed.fields[Bmp.TLV_CONTAINER] == bytes.fromhex("0a0105")
    assert parsed.fields[Bmp.CURRENCY_CODE] == bytes.fromhex("0978")
    assert parsed.unparsed == b""


def test_llvar_fields_and_unknown_bmps_stop_cleanly() -> None:
    # BMP 22 (card number, LLVAR "F0 F4" = 4 bytes), then an unknown BMP 0xF7.
    parsed = parse_bitmaps(bytes.fromhex("22f0f4 11223344 2700 f7 0102"))
    assert parsed.fields[0x22] == bytes.fromhex("11223344") and parsed.result_code == 0
    assert parsed.unparsed == bytes.fromhex("f70102")


@given(st.binary(max_size=64))
def test_parsing_never_raises(data: bytes) -> None:
    parsed = parse_bitmaps(data)
    assert data.endswith(parsed.unparsed)


def test_encode_and_parse_round_trip() -> None:
    fields: dict[int, bytes] = {
        Bmp.RESULT_CODE: b"\xa3",
        Bmp.TERMINAL_ID: bytes.fromhex("00000042"),
    }
    assert parse_bitmaps(encode_bitmaps(fields)).fields == fields


def test_result_codes_map_to_faults() -> None:
    assert fault_for(0x00) is None and fault_for(0x9C) is None
    tamper = fault_for(0xED)
    assert tamper is not None and tamper.severity is Severity.CRITICAL
    assert tamper.component == "tamper"
    unknown = fault_for(0x42)
    assert unknown is not None and unknown.code == "system.zvt_42"
