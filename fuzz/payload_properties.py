"""What the contract's decoding of MQTT messages promises, as the centre's ingest calls it.

:func:`posfleet.contract.decode` (topic and raw payload bytes, every channel) rejects
with :class:`PayloadError` only: the bridge dead-letters exactly that, and anything else
would fail the whole batch. What decodes re-encodes (:func:`posfleet.contract.encode`) to
bytes that decode to an equal payload.

Raw bytes rarely get past the JSON parser, so most inputs are valid payloads of each
channel with a few fields replaced, removed or added, chosen by the input's bytes.
"""

from __future__ import annotations

import json
from typing import Any

from fuzz.typed_rejection import accepted
from posfleet.contract import (
    Channel,
    PayloadError,
    decode,
    encode,
    topic,
)

TERMINAL = "T-0001"
_TS = "2026-03-01T12:00:00Z"

SAMPLES: dict[Channel, dict[str, Any]] = {
    Channel.STATE: {"online": True, "agent_version": "1.4.0", "boot_id": "b1", "ts": _TS},
    Channel.INVENTORY: {
        "model": "V200c",
        "serial": "S1",
        "hw_revision": "B",
        "firmware_version": "4.2.1",
        "app_versions": {"payment": "7.1"},
        "agent_version": "1.4.0",
        "merchant_id": "M1",
        "timezone": "Europe/Berlin",
        "capabilities": ["zvt"],
        "ts": _TS,
    },
    Channel.HEALTH: {
        "seq": 7,
        "ts": _TS,
        "interval_s": 60,
        "metrics": {
            "battery": {"percent": 80.5, "charging": False, "health_percent": 90, "cycles": 3},
            "temperature_c": 31.5,
            "printer": {"status": "paper_low", "lines_printed": 10},
            "card_reader": {"chip": {"reads": 5, "errors": 1}, "insertions_total": 9},
            "network": {"type": "wifi", "rssi_dbm": -60, "host_reachable": True},
            "storage_used_pct": 40,
            "clock_offset_s": -1.5,
            "keys": {"dukpt_remaining": 100, "key_expiry": "2027-01-31"},
            "transactions": {"approved": 3, "decline_codes": {"05": 1}},
            "uptime_s": 3600,
            "reboot_reason": "power_on",
        },
    },
    Channel.EVENT: {
        "seq": 8,
        "ts": _TS,
        "code": "printer.no_paper",
        "component": "printer",
        "severity": "error",
        "detail": "out of paper",
        "zvt_result_code": 204,
    },
    Channel.CMD: {
        "id": "c1",
        "name": "reboot",
        "args": {"delay_s": 5},
        "issued_by": "ops@example.com",
        "issued_at": _TS,
        "expires_at": "2026-03-01T12:05:00Z",
    },
    Channel.CMD_RESULT: {"id": "c1", "status": "ok", "output": {"k": [1]}, "ts": _TS},
    Channel.FW_OFFER: {
        "action_id": "17.1",
        "signed_manifest": {
            "manifest": {
                "name": "fw",
                "version": "4.3.0",
                "sha256": "0" * 64,
                "size": 1024,
                "models": ["V200c"],
            },
            "key_id": "k1",
            "signature": "A" * 86 + "==",
        },
        "url": "https://centre.example/fw/17",
        "token": "t" * 16,
        "window": {"start": "22:00", "end": "06:00", "weekdays": [0, 1]},
        "expires_at": "2026-03-02T12:00:00Z",
    },
    Channel.FW_STATUS: {"action_id": "17.1", "state": "downloading", "progress": 0.5, "ts": _TS},
}
"""One valid payload of each channel, every optional part present."""

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**400,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    "",
    "x" * 5000,
    "\x00",
    "\ud800",
    "²",
    [],
    {},
    [[[[[]]]]],
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30T00:00:00Z",
    "2026-03-01T12:00:00",
    "America",
    "Etc",
    "../UTC",
]
"""Values that have broken decoders before: extremes, wrong types, odd text."""


class _Bytes:
    """Reads small numbers and text off the fuzzer's input, then zeros once it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def text(self) -> str:
        size = self.byte() % 24
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk.decode("utf-8", "replace")


def _mutate(node: Any, source: _Bytes, depth: int = 0) -> Any:
    """``node`` with one part replaced, removed or added, as ``source`` says."""
    op = source.byte()
    children: list[Any] = (
        sorted(node)
        if isinstance(node, dict)
        else list(range(len(node)))
        if isinstance(node, list)
        else []
    )
    if children and op % 4 and depth < 8:
        key = children[source.byte() % len(children)]
        copy: Any = dict(node) if isinstance(node, dict) else list(node)
        if op % 4 == 3:
            del copy[key]
        else:
            copy[key] = _mutate(copy[key], source, depth + 1)
        if isinstance(copy, dict) and op % 8 == 7:
            copy[source.text()] = HOSTILE[source.byte() % len(HOSTILE)]
        return copy
    choice = source.byte()
    if choice % 3 == 0:
        return source.text()
    if choice % 3 == 1 and isinstance(node, int | float) and not isinstance(node, bool):
        return node + (source.byte() - 128) * 10 ** (source.byte() % 24)
    return HOSTILE[source.byte() % len(HOSTILE)]


def check_message(topic_name: str, payload: bytes) -> None:
    """Assert :func:`decode`'s promises for one message."""
    message = accepted(PayloadError, lambda: decode(topic_name, payload))
    if message is None:
        return
    again = decode(topic_name, encode(message.payload))
    assert again == message, f"{message.payload!r} re-encodes as {again.payload!r}"


def check_payload(data: bytes) -> None:
    """Byte 0 picks the channel, byte 1 how to build the message; the rest is input."""
    if len(data) < 2:
        return
    channel = list(Channel)[data[0] % len(Channel)]
    mode, rest = data[1] % 4, data[2:]
    name = topic(TERMINAL, channel)
    if mode == 0:
        check_message(name, rest)
    elif mode == 1:
        check_message(rest.decode("utf-8", "replace"), json.dumps(SAMPLES[channel]).encode())
    else:
        source = _Bytes(rest)
        value: Any = SAMPLES[channel]
        for _ in range(1 + source.byte() % 3):
            value = _mutate(value, source)
        check_message(name, json.dumps(value).encode("utf-8", "surrogatepass"))
