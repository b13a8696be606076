"""What the ZVT driver's parsing promises, whatever an ECR terminal answers.

- :func:`parse_bitmaps` never raises; the fields it splits off plus ``unparsed`` are the
  input, and what it parsed parses again to the same fields; fixed-length fields re-encode
  (:func:`encode_bitmaps`) to bytes that parse back equal.
- :class:`ZvtDriver`, talking to a terminal that answers the given messages, either
  returns or raises a :class:`SerialLinkError` (its ``DriverError`` subclasses, or a
  timeout when the messages run out): nothing else reaches the agent's poll loop.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from fuzz.typed_rejection import accepted
from posfleet.agent.drivers.zvt import ZvtDriver
from posfleet.agent.drivers.zvt_protocol import (
    _FIXED_BMP_BYTES,
    encode_bitmaps,
    parse_bitmaps,
)
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.serial.fake_link import FakeLink
from posfleet.contract import Component, Severity

T = TypeVar("T")


def check_bitmaps(data: bytes) -> None:
    """Assert :func:`parse_bitmaps`'s promises for ``data``."""
    parsed = parse_bitmaps(data)
    consumed = data[: len(data) - len(parsed.unparsed)]
    assert consumed + parsed.unparsed == data, "unparsed is not the input's tail"
    again = parse_bitmaps(consumed)
    assert again.unparsed == b"", "what parsed does not parse completely again"
    assert again.fields == parsed.fields, "what parsed parses to other fields"
    if all(bmp in _FIXED_BMP_BYTES for bmp in parsed.fields):
        rebuilt = parse_bitmaps(encode_bitmaps(parsed.fields))
        assert rebuilt.fields == parsed.fields, "fixed fields do not re-encode"
    if parsed.result_code is not None:
        assert 0 <= parsed.result_code <= 0xFF
    if parsed.terminal_id is not None:
        assert len(parsed.terminal_id) == 8


def terminal_messages(data: bytes) -> list[Apdu]:
    """``data`` cut into APDUs: class, instruction, a one-byte length, then the data."""
    messages = []
    pos = 0
    while pos + 3 <= len(data):
        size = data[pos + 2]
        body = data[pos + 3 : pos + 3 + size]
        messages.append(Apdu(data[pos], data[pos + 1], body))
        pos += 3 + size
    return messages


def run_without_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the fake link answers at once), without a loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the driver waited although the fake link never blocks")


def check_zvt_conversation(command: int, data: bytes) -> None:
    """Assert that the driver only fails with a link error, for one of its commands."""
    messages = terminal_messages(data)
    link = FakeLink(lambda apdu: messages if apdu.cls in (0x05, 0x06) else [])
    driver = ZvtDriver(link)
    action = command % 3
    if action == 0:
        identity = accepted(SerialLinkError, lambda: run_without_loop(driver.identify()))
        if identity is not None:
            assert identity.serial
    elif action == 1:
        faults = accepted(SerialLinkError, lambda: run_without_loop(driver.read_faults()))
        for fault in faults or []:
            assert isinstance(fault.component, Component)
            assert isinstance(fault.severity, Severity)
    else:
        outcome = accepted(SerialLinkError, lambda: run_without_loop(driver.run_diagnosis()))
        if outcome is not None:
            assert 0 <= outcome.result_code <= 0xFF


def check_zvt(data: bytes) -> None:
    """Byte 0 picks the bitmap parser or one of the driver's commands; the rest is input."""
    if not data:
        return
    if data[0] % 4 == 0:
        check_bitmaps(data[1:])
    else:
        check_zvt_conversation(data[0], data[1:])
