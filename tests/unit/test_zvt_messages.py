"""The ZVT decoder on documented messages: what real terminals send, as hex, with sources.

Sources of the vectors (facts, carried as bytes):
- ISSUE_18: the Completion a real terminal sent after a Status Enquiry, as quoted in issue 18
  (``06 0F 89 F0 F4 F0 "GER-APP..." 00 06 ...``, 137 data bytes); the issue quotes its head,
  so the 40 version bytes and the container's content here are filled in to the layout the
  ZVT specification gives (LLLVAR version, status byte, BMP 06).
- PORTALUM_*: terminal traces published in the Portalum.Zvt project's unit tests
  (StatusInformationParserTest, ZvtClientTest, IntermediateStatusInformationParserTest).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posfleet.agent.drivers.zvt_bitmaps import ZvtDecodeError, llvar, tlv_container
from posfleet.agent.drivers.zvt_messages import decode_apdu
from posfleet.agent.drivers.zvt_result_codes import (
    RESULT_CODES,
    TERMINAL_STATUS_ONLY,
    ResultClass,
    fault_for,
    iso8583_code,
    result_code,
    terminal_status,
)
from posfleet.contract import Component, Severity


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", "").replace(" ", ""))


def issue_18_completion(status: int) -> bytes:
    version = b"GER-APP-v2.0.9;cVEN6A0000;R2.1.3".ljust(40, b" ")
    content = bytes((0x1F, 0x10, 0x01, 0x00)) + bytes((0x24, 0x55, 0x07, 0x53)) + b"x" * 83
    data = llvar(version, 3) + bytes((status,)) + tlv_container(content)
    assert len(data) == 0x89
    return bytes((0x06, 0x0F, len(data))) + data


PORTALUM_PAYMENT = _hex(
    "04 0F 77 27 00 04 00 00 00 00 20 40 0B 00 04 70 0C 22 39 53 0D 10 06 0E 25 12 17 00 01"
    "19 70 22 F0 F8 EE EE EE EE EE EE 47 71 29 28 00 48 69 2A 31 30 30 34 36 31 37 36 33 20"
    "20 20 20 20 20 3B 36 31 31 38 30 34 00 00 3C F0 F1 F4 47 45 4E 2E 4E 52 2E 3A 36 31 31"
    "38 30 34 49 09 78 87 04 70 88 00 04 70 8A 2E 8B F1 F7 44 65 62 69 74 20 4D 61 73 74 65"
    "72 63 61 72 64 00"
)
PORTALUM_TLV = _hex(
    "04-0F-65-27-00-0C-23-13-55-0D-10-29-0E-99-99-22-F0-F8-EE-EE-EE-EE-EE-EE-47-71-A0-01-29-00"
    "-00-00-06-87-00-08-0B-00-00-00-8A-06-8B-F1-F1-4D-41-53-54-45-52-43-41-52-44-00-06-2E-2F"
    "-08-1F-12-01-02-1F-10-01-00-60-1B-43-07-A0-00-00-00-04-10-10-44-10-44-65-62-69-74-20-4D"
    "-61-73-74-65-72-63-61-72-64-1F-2B-04-10-01-50-08"
)
PORTALUM_DECLINED = _hex(
    "04-0F-25-27-05-29-29-00-02-74-3C-F0-F0-F9-41-62-67-65-6C-65-68-6E-74-8A-06-06-0D-24-0B"
    "-07-09-41-62-67-65-6C-65-68-6E-74"
)


def test_a_real_status_enquiry_completion_gives_version_and_status() -> None:
    message = decode_apdu(issue_18_completion(0x00))
    assert message.name == "completion"
    assert message.software_version == "GER-APP-v2.0.9;cVEN6A0000;R2.1.3"
    assert message.terminal_status == 0x00 and message.result_code is None
    assert message.tlv is not None and [t.tag for t in message.tlv] == ["1f10", "24"]
    assert message.unparsed == b""


def test_printer_not_ready_in_a_real_completion_is_a_printer_fault() -> None:
    message = decode_apdu(issue_18_completion(0xCC))
    assert message.terminal_status == 0xCC
    assert message.status is not None and message.status.result_class is ResultClass.FAULT
    fault = fault_for(0xCC, status=True)
    assert fault is not None
    assert (fault.code, fault.component) == ("printer.not_ready", Component.PRINTER)
    assert message.summary()["terminal_status_meaning"] == "printer not ready"


def test_a_published_payment_status_information_decodes_every_common_field() -> None:
    message = decode_apdu(PORTALUM_PAYMENT)
    assert (message.result_code, message.amount_cents) == (0x00, 2040)
    assert (message.trace, message.receipt) == (470, 470)
    assert (message.time, message.date) == ("22:39:53", "10-06")
    assert message.terminal_id == "28004869" and message.aid == "611804"
    assert message.card_type == 0x2E and message.card_name == "Debit Mastercard"
    summary = message.summary()
    assert summary["card_type"] == "Maestro"
    assert "22" not in summary.get("other_bmps", [])  # the (masked) PAN is never shown


def test_a_published_status_information_with_a_tlv_container() -> None:
    message = decode_apdu(PORTALUM_TLV)
    assert message.terminal_id == "00000006" and message.receipt == 8
    assert message.card_name == "MASTERCARD"
    assert message.tlv is not None
    assert [t.tag for t in message.tlv] == ["2f", "60", "1f2b"]
    assert [c.tag for c in message.tlv[1].children] == ["43", "44"]


def test_a_published_decline_and_the_aborts_that_end_payments() -> None:
    declined = decode_apdu(PORTALUM_DECLINED)
    assert declined.result_code == 0x05 and declined.declined
    assert declined.result is not None and declined.result.result_class is ResultClass.DECLINED
    assert iso8583_code(0x05) == "05" and iso8583_code(0x33) == "51"
    unreadable = decode_apdu(_hex("06 1E 01 64"))
    assert unreadable.name == "abort" and unreadable.result_code == 0x64
    assert unreadable.result is not None
    assert unreadable.result.result_class is ResultClass.CARD_ERROR
    assert decode_apdu(_hex("06 1E 01 05")).result_code == 0x05
    assert decode_apdu(_hex("84 83 00")).result_code == 0x83


def test_intermediate_status_with_and_without_its_tlv() -> None:
    insert = decode_apdu(_hex("04 FF 01 0A"))
    assert insert.intermediate_status == 0x0A
    assert insert.summary()["intermediate_meaning"] == "insert card"
    texts = _hex(
        "04 FF 1E FF 10 06 1A 24 18 07 08 45 55 52 20 31 2E 32 33 07 0C 42 69 74 74 65 20 77"
        "61 72 74 65 6E"
    )
    waiting = decode_apdu(texts)
    assert waiting.intermediate_status == 0xFF
    assert waiting.tlv is not None
    assert [c.value for c in waiting.tlv[0].children] == [b"EUR 1.23", b"Bitte warten"]


def test_unknown_bmps_stop_the_split_and_truncation_is_a_typed_error() -> None:
    known_then_unknown = decode_apdu(_hex("04 0F 06 27 00 FE 01 02 03"))
    assert known_then_unknown.result_code == 0 and known_then_unknown.unparsed == _hex("FE010203")
    # 2A (15 bytes) and 3C (LLLVAR) are not interpreted, but skipped by their length class.
    skipped = decode_apdu(_hex("04 0F 19 2A") + b"x" * 15 + _hex("3C F0 F0 F3 41 42 43 27 CC"))
    assert skipped.result_code == 0xCC and set(skipped.bmps) == {0x2A, 0x3C, 0x27}
    with pytest.raises(ZvtDecodeError, match="BMP 2A needs 15 bytes but 7 remain"):
        decode_apdu(_hex("04 0F 08 2A") + b"x" * 7)
    with pytest.raises(ZvtDecodeError, match="BMP 04 needs 6 bytes"):
        decode_apdu(_hex("04 0F 03 04 00 00"))
    with pytest.raises(ZvtDecodeError, match="software version needs 40 bytes"):
        decode_apdu(_hex("06 0F 05 F0 F4 F0 41 42"))
    with pytest.raises(ZvtDecodeError, match="not BCD"):
        decode_apdu(_hex("04 0F 07 04 00 00 00 00 0A 00"))
    with pytest.raises(ZvtDecodeError, match="length field says"):
        decode_apdu(_hex("04 0F 05 27 00"))


@given(st.binary(max_size=80))
def test_decoding_any_bytes_gives_a_message_or_a_typed_error(body: bytes) -> None:
    for head in (b"\x04\x0f", b"\x06\x0f", b"\x06\x1e", b"\x04\xff"):
        try:
            message = decode_apdu(head + bytes((len(body),)) + body)
        except ZvtDecodeError as exc:
            assert exc.offset >= 0
        else:
            assert message.data == body


def test_every_code_in_the_table_has_a_class_and_faults_name_a_component() -> None:
    for code, entry in {**RESULT_CODES, **TERMINAL_STATUS_ONLY}.items():
        assert entry.code == code and entry.meaning
        if entry.result_class is ResultClass.FAULT:
            assert entry.fault is not None, f"{code:02x} is a fault without a fault event"
    assert result_code(0x05).result_class is ResultClass.DECLINED
    assert result_code(0x64).result_class is ResultClass.CARD_ERROR
    assert result_code(0x6C).result_class is ResultClass.CANCELLED
    assert terminal_status(0x62).meaning == "date/time incorrect"  # not acquirer code 62
    assert fault_for(0x9C, status=True) is None and fault_for(0xF0, status=True) is None
    pin_pad = fault_for(0xED)
    assert pin_pad is not None and pin_pad.severity is Severity.CRITICAL
