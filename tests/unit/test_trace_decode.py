"""``posfleet-agent trace decode`` on captures made from real encoded frames plus garbage."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from posfleet.agent.cli import main
from posfleet.agent.drivers.maintenance_codes import Instruction, request
from posfleet.agent.serial.apdu import Apdu, failure
from posfleet.agent.serial.frames import ACK, NAK, encode_frame
from posfleet.agent.serial.tlv import uint_tlv
from posfleet.agent.trace import HexDumpError, parse_hex_dump

READ_FAULTS = encode_frame(request(Instruction.READ_FAULTS, [uint_tlv(0x67, 0x10)]).encode())
LONG_REPLY = encode_frame(Apdu(0x80, 0x00, bytes(range(256)) + bytes(44)).encode())
REFUSAL = encode_frame(failure(0xCC).encode())


def capture() -> bytes:
    corrupt = bytearray(REFUSAL)
    corrupt[3] ^= 0x01  # one bit flipped on the line: the CRC no longer matches
    return (
        b"\x00\xff\x41"  # line noise before anything
        + READ_FAULTS
        + bytes((ACK,))
        + LONG_REPLY
        + bytes((NAK,))
        + bytes(corrupt)
        + b"\x10\x02\xe0\x01"  # a frame cut off by the end of the capture
    )


def decode(
    text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, object]]:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert main(["trace", "decode", "-"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def xxd(data: bytes) -> str:
    """What ``xxd`` prints: offset, colon, 2-byte groups, two spaces, ASCII column."""
    lines = []
    for i in range(0, len(data), 16):
        row = data[i : i + 16]
        groups = " ".join(row[j : j + 2].hex() for j in range(0, len(row), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{i:08x}: {groups:<39}  {text}")
    return "\n".join(lines) + "\n"


def expected_records() -> list[dict[str, object]]:
    return [
        {"type": "error", "errors": ["3 byte(s) outside any frame skipped"]},
        {
            "type": "frame",
            "class": "e0",
            "instruction": "03",
            "length_form": "short",
            "length": 3,
            "data": "670110",
            "name": "maintenance read faults",
            "crc_ok": True,
            "errors": [],
        },
        {"type": "ack"},
        {
            "type": "frame",
            "class": "80",
            "instruction": "00",
            "length_form": "long",
            "length": 300,
            "crc_ok": True,
        },
        {"type": "nak"},
        {"type": "frame", "class": "84", "instruction": "cd", "crc_ok": False},
        {"type": "error", "errors": ["capture ends inside a frame"]},
    ]


def assert_matches(records: list[dict[str, object]]) -> None:
    wanted = expected_records()
    assert len(records) == len(wanted)
    for record, expected in zip(records, wanted, strict=True):
        assert {k: record[k] for k in expected} == expected
    assert records[3]["data"] == (bytes(range(256)) + bytes(44)).hex()
    bad_crc = records[5]["errors"]
    assert isinstance(bad_crc, list) and "CRC is" in bad_crc[0]


def test_plain_spaced_hex_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = capture()
    text = "\n".join(data[i : i + 16].hex(" ") for i in range(0, len(data), 16))
    assert_matches(decode(text, monkeypatch, capsys))


def test_0x_prefixed_bytes_with_commas(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ", ".join(f"0x{b:02X}" for b in capture())
    assert_matches(decode(text, monkeypatch, capsys))


def test_xxd_output_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "capture.txt"
    path.write_text(xxd(capture()), encoding="utf-8")
    assert main(["trace", "decode", str(path)]) == 0
    assert_matches([json.loads(line) for line in capsys.readouterr().out.splitlines()])


def test_hexdump_canonical_output() -> None:
    data = capture()
    lines = [
        f"{i:08x}  {data[i : i + 8].hex(' ')}  {data[i + 8 : i + 16].hex(' ')}  |{'.' * 16}|"
        for i in range(0, len(data), 16)
    ]
    assert parse_hex_dump("\n".join(lines)) == data


def test_text_that_is_not_hex_names_the_line() -> None:
    with pytest.raises(HexDumpError, match="line 2 is not hex bytes"):
        parse_hex_dump("10 02\nhello world\n")


def test_an_unreadable_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "decode", str(tmp_path / "missing.txt")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_a_tcp_capture_decodes_apdu_by_apdu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_zvt_messages import PORTALUM_PAYMENT, issue_18_completion

    wire = (
        bytes.fromhex("05 01 03 00 00 00 80 00 00")  # Status Enquiry, the terminal's ack
        + issue_18_completion(0xCC)  # the real terminal's Completion: printer not ready
        + bytes.fromhex("80 00 00")
        + PORTALUM_PAYMENT
        + bytes.fromhex("06 0f 10 f0")  # cut off by the end of the capture
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(wire.hex(" ")))
    assert main(["trace", "decode", "--tcp", "-"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["type"] for r in records] == ["apdu"] * 5 + ["error"]
    enquiry, ack, completion, _, payment, cut = records
    assert enquiry["name"] == "zvt status enquiry" and ack["name"] == "positive completion"
    assert "crc_ok" not in completion and completion["errors"] == []
    assert completion["zvt"]["software_version"].startswith("GER-APP-v2.0.9")
    assert completion["zvt"]["terminal_status"] == "cc"
    assert "printer" in completion["zvt"]["terminal_status_meaning"].lower()
    assert payment["zvt"]["amount_cents"] == 2040 and payment["zvt"]["result_code"] == "00"
    assert payment["offset"] == len(wire) - 5
    assert cut["errors"] == ["capture ends inside an APDU (4 byte(s) of it)"]
