"""The checked-in seed corpora: one valid input of each kind per harness.

``python -m fuzz.seeds`` rewrites ``fuzz/corpus/<harness>/``. The fuzzer starts from these
and mutates; without them most inputs would die in the first length or JSON check.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fuzz.payload_properties import SAMPLES
from fuzz.tlv_properties import CODECS
from posfleet.agent.drivers.base import (
    ConfigBackup,
    ConfigRestoreResult,
    DetectedFault,
    DiagnosticCheck,
    DiagnosticResult,
    DiagnosticTest,
    FirmwareSlot,
    FirmwareSlots,
    FirmwareTransfer,
    TerminalCounters,
    TerminalIdentity,
)
from posfleet.agent.drivers.maintenance_actions import FirmwareImageInfo, LogChunk
from posfleet.agent.drivers.zvt_protocol import encode_bitmaps
from posfleet.agent.serial.apdu import Apdu, failure, success
from posfleet.agent.serial.frames import ACK, NAK, encode_frame
from posfleet.agent.serial.tlv import encode_tlv, text_tlv, uint_tlv
from posfleet.contract import (
    Battery,
    Channel,
    Component,
    HealthMetrics,
    Keys,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    Severity,
    Transactions,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
_T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CODEC_SAMPLES: dict[str, Any] = {
    "identity": TerminalIdentity("V200c", "S1", "B", "4.2.1", {"payment": "7.1"}, ["zvt"], "M1"),
    "health": HealthMetrics(
        battery=Battery(percent=80.5, charging=True, health_percent=90, cycles=3),
        temperature_c=31.5,
        printer=Printer(status=PrinterStatus.JAM, lines_printed=7),
        network=Network(type=NetworkType.WIFI, rssi_dbm=-60, host_reachable=True),
        clock_offset_s=-1.5,
        keys=Keys(dukpt_remaining=9, key_expiry=date(2027, 1, 31)),
        transactions=Transactions(approved=3, decline_codes={"05": 2}),
        uptime_s=3600,
    ),
    "faults": [(1, DetectedFault("printer.jam", Component.PRINTER, Severity.ERROR, "jam", 204))],
    "diagnostic": DiagnosticResult(
        DiagnosticTest.PRINTER, True, "ok", 12, [DiagnosticCheck("paper", True, "full")]
    ),
    "counters": TerminalCounters(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
    "log request": (_T, _T, 0),
    "log chunk": LogChunk(5, b"line\n"),
    "params": {"host": "acq.example", "port": "443"},
    "backup": ConfigBackup({"host": "acq.example"}, ["pin_key"]),
    "restore result": ConfigRestoreResult(["host"], {"pin_key": "secret"}),
    "slots": FirmwareSlots(FirmwareSlot("A"), {FirmwareSlot("A"): "4.2.1"}, True, "B"),
    "firmware begin": FirmwareImageInfo(1024, bytes(32), "4.3.0"),
    "transfer": FirmwareTransfer(FirmwareSlot("B"), 512, 0),
    "block": (0, b"\x7fELF"),
}
"""A valid value of each maintenance codec, by its name in ``tlv_properties.CODECS``."""

RULE_FILE = """\
rules:
  - id: site.printer_jam
    title: Printer jammed
    component: printer
    severity: error
    when: printer.status == "jam" || events.jam > 0
    clear_when: printer.status == "ok"
    for: 2m
    window: 10m
    events:
      jam: ["printer.jam"]
    cause: Paper caught in the feed.
    remedy:
      - Open the cover and remove the paper.
    escalation: remote_fix
    fixed_by: merchant
  - id: site.tls
    title: TLS failing
    component: network
    severity: warning
    increase:
      tls: network.tls_failures
    when: increase.tls >= 3.0
    absence_intervals: 3
    cause: Certificate expired.
    remedy: Renew it.
    escalation: on_site
    correlate: [acquirer, site]
"""


def _codec_selector(index: int) -> int:
    """A first byte that makes ``tlv_properties.check_tlv_apdu`` pick codec ``index``."""
    return next(b for b in range(256) if b % 8 >= 2 and b % len(CODECS) == index)


def seeds() -> dict[str, dict[str, bytes]]:
    """Harness -> seed file name -> content."""
    apdu = Apdu(0x05, 0x01, bytes.fromhex("000000"))
    frames = {
        "status-enquiry": b"\x40\x03" + encode_frame(apdu.encode()) + bytes((ACK,)),
        "escaped-dle": b"\x40\x00" + encode_frame(bytes((0x80, 0x00, 0x02, 0x10, 0x10))),
        "nak-garbage": b"\x00\x05" + bytes((NAK, 0x41, 0x10, 0x41)) + encode_frame(b"\x06\x1e"),
    }
    tlv_apdu = {
        "apdu-short": b"\x00" + success(b"\x27\x00").encode(),
        "apdu-long": b"\x00" + Apdu(0x06, 0xD1, bytes(300)).encode(),
        "tlv": b"\x01" + encode_tlv([uint_tlv(0x10, 70000), text_tlv(0x11, "é" * 70)]),
    }
    for index, (name, _decode, encode) in enumerate(CODECS):
        data = encode_tlv(encode(CODEC_SAMPLES[name]))
        tlv_apdu[name.replace(" ", "-")] = bytes((_codec_selector(index),)) + data
    status = encode_bitmaps({0x27: b"\x00", 0x29: bytes.fromhex("12345678")})
    zvt = {
        "bitmaps": b"\x00" + status + b"\x06\x03\x01\x01\x00" + b"\x22\xf0\xf2ab",
        "status-conversation": b"\x02"
        + success().encode()
        + Apdu(0x04, 0xFF, b"\x01").encode()
        + Apdu(0x06, 0xD1, b"\x00receipt").encode()
        + Apdu(0x04, 0x0F, status).encode()
        + Apdu(0x06, 0x0F, b"").encode(),
        "refused": b"\x01" + failure(0x83).encode(),
        "abort": b"\x03" + success().encode() + Apdu(0x06, 0x1E, b"\xa3").encode(),
    }
    payloads = {}
    for index, channel in enumerate(Channel):
        body = json.dumps(SAMPLES[channel]).encode()
        name = channel.value.replace("/", "-")
        payloads[f"{name}-raw"] = bytes((index, 0)) + body
        payloads[f"{name}-mutated"] = bytes((index, 2)) + bytes(8)
    rules = {"site-rules": RULE_FILE.encode()}
    return {
        "frames": frames,
        "tlv_apdu": tlv_apdu,
        "zvt": zvt,
        "payloads": payloads,
        "rule_files": rules,
    }


def main() -> None:
    """Rewrite every seed corpus."""
    for harness, files in seeds().items():
        folder = CORPUS / harness
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, content in files.items():
            (folder / name).write_bytes(content)


if __name__ == "__main__":
    main()
