"""What the APDU and TLV codecs, and the maintenance command set's decoders, promise.

- :meth:`Apdu.decode` rejects with :class:`ApduError` only; what it accepts re-encodes to an
  APDU that decodes equal, byte for byte when the input used the short length form.
- :func:`decode_tlv` and the typed accessors of :class:`TlvRecord` reject with
  :class:`TlvError` only; what decodes re-encodes (never longer) and decodes equal.
- Every ``*_from_tlv`` decoder of the maintenance command set rejects with
  :class:`TlvError` only (the driver turns exactly that into a ``MalformedReplyError``;
  anything else would escape the driver), and what it decodes, its ``*_to_tlv`` encoder
  writes back to bytes that decode to the same value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fuzz.typed_rejection import accepted
from posfleet.agent.drivers import maintenance_actions as actions
from posfleet.agent.drivers import maintenance_protocol as protocol
from posfleet.agent.drivers.maintenance_codes import Tag
from posfleet.agent.serial.apdu import LONG_LENGTH_MARKER, Apdu
from posfleet.agent.serial.errors import ApduError, TlvError
from posfleet.agent.serial.tlv import Tlv, TlvRecord, decode_tlv, encode_tlv

Decoder = Callable[[TlvRecord], Any]
Encoder = Callable[[Any], Sequence[Tlv]]


def _faults(record: TlvRecord) -> list[tuple[int, Any]]:
    return [protocol.fault_from_tlv(item) for item in record.nested(Tag.FAULT)]


def _health(record: TlvRecord) -> Any:
    metrics, _rejected = protocol.health_from_tlv(record)
    return metrics


CODECS: list[tuple[str, Decoder, Encoder]] = [
    ("identity", protocol.identity_from_tlv, protocol.identity_to_tlv),
    ("health", _health, protocol.health_to_tlv),
    ("faults", _faults, lambda pairs: [protocol.fault_to_tlv(s, f) for s, f in pairs]),
    ("diagnostic", actions.diagnostic_from_tlv, actions.diagnostic_to_tlv),
    ("counters", actions.counters_from_tlv, actions.counters_to_tlv),
    ("log request", actions.log_request_from_tlv, lambda v: actions.log_request_to_tlv(*v)),
    ("log chunk", actions.log_chunk_from_tlv, actions.log_chunk_to_tlv),
    ("params", actions.params_from_tlv, actions.params_to_tlv),
    ("backup", actions.backup_from_tlv, actions.backup_to_tlv),
    ("restore result", actions.restore_result_from_tlv, actions.restore_result_to_tlv),
    ("slots", actions.slots_from_tlv, actions.slots_to_tlv),
    ("firmware begin", actions.begin_from_tlv, actions.begin_to_tlv),
    ("transfer", actions.transfer_from_tlv, actions.transfer_to_tlv),
    ("block", actions.block_from_tlv, lambda v: actions.block_to_tlv(*v)),
]
"""Every decoder of the maintenance command set, with the encoder of the same data."""


def check_apdu(raw: bytes) -> None:
    """Assert :meth:`Apdu.decode`'s promises for ``raw``."""
    apdu = accepted(ApduError, lambda: Apdu.decode(raw))
    if apdu is None:
        return
    encoded = apdu.encode()
    assert Apdu.decode(encoded) == apdu, "re-encoded APDU decodes differently"
    if raw[2] != LONG_LENGTH_MARKER:
        assert encoded == raw, "short-form APDU does not re-encode byte for byte"


def check_tlv(raw: bytes) -> None:
    """Assert :func:`decode_tlv`'s and :class:`TlvRecord`'s promises for ``raw``."""
    items = accepted(TlvError, lambda: decode_tlv(raw))
    if items is None:
        return
    encoded = encode_tlv(items)
    assert len(encoded) <= len(raw), "re-encoding grew the data"
    assert decode_tlv(encoded) == items, "re-encoded TLV decodes differently"
    record = TlvRecord(items)
    for tag in {item.tag for item in items}:
        _read_every_way(record, tag)


def _read_every_way(record: TlvRecord, tag: int) -> None:
    accepted(TlvError, lambda: record.uint(tag))
    accepted(TlvError, lambda: record.sint(tag))
    accepted(TlvError, lambda: record.flag(tag))
    accepted(TlvError, lambda: record.text(tag))
    accepted(TlvError, lambda: record.texts(tag))
    accepted(TlvError, lambda: record.nested(tag))


def check_codec(index: int, raw: bytes) -> None:
    """Assert that maintenance decoder ``index`` (modulo their number) keeps its promises."""
    name, decode, encode = CODECS[index % len(CODECS)]
    record = accepted(TlvError, lambda: TlvRecord.parse(raw))
    if record is None:
        return
    value = accepted(TlvError, lambda: decode(record))
    if value is None:
        return
    encoded = encode_tlv(encode(value))
    again = decode(TlvRecord.parse(encoded))
    assert again == value, f"{name}: {value!r} re-encodes as {again!r}"


def check_tlv_apdu(data: bytes) -> None:
    """Byte 0 picks the decoder (APDU, TLV, or one of :data:`CODECS`); the rest is input."""
    if not data:
        return
    choice, raw = data[0], data[1:]
    if choice % 8 == 0:
        check_apdu(raw)
    elif choice % 8 == 1:
        check_tlv(raw)
    else:
        check_codec(choice, raw)
