"""ZVT serial framing and APDUs: byte-exact frames, round trips, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posfleet.agent.serial.apdu import Apdu, failure, success
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
    crc16_kermit,
    encode_frame,
)

# Noise that cannot be mistaken for link control bytes (DLE, ACK, NAK).
NOISE = st.binary(max_size=40).map(lambda b: bytes(x for x in b if x not in (0x10, 0x06, 0x15)))


def frames_in(events: list[DecoderEvent]) -> list[bytes]:
    return [e.apdu for e in events if isinstance(e, FrameReceived)]


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[DecoderEvent]:
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_crc_matches_the_published_kermit_check_value() -> None:
    assert crc16_kermit(b"123456789") == 0x2189


@pytest.mark.parametrize(
    ("apdu", "wire"),
    [
        # The positive completion every ZVT terminal sends; its frame is well known.
        ("80 00 00", "10 02 80 00 00 10 03 f5 1f"),
        # Status enquiry; its CRC happens to contain 0x10, which is NOT doubled.
        ("05 01 00", "10 02 05 01 00 10 03 10 06"),
        # Data with 0x10 in it (and 0x10 as the instruction): every DLE doubled.
        ("e0 10 03 70 01 10", "10 02 e0 10 10 03 70 01 10 10 10 03 77 da"),
    ],
)
def test_known_frames_are_encoded_and_decoded_byte_exactly(apdu: str, wire: str) -> None:
    raw, frame = bytes.fromhex(apdu), bytes.fromhex(wire)
    assert encode_frame(raw) == frame
    assert FrameDecoder().feed(frame) == [FrameReceived(raw)]


def test_long_length_form_is_used_from_255_data_bytes() -> None:
    assert Apdu(0xE0, 0x02, bytes(254)).encode()[:3] == bytes.fromhex("e0 02 fe")
    # 255 itself must use the long form: 0xFF is the marker, not a length.
    assert Apdu(0xE0, 0x02, bytes(255)).encode()[:5] == bytes.fromhex("e0 02 ff ff 00")
    encoded = Apdu(0xE0, 0x02, bytes(300)).encode()
    assert encoded[:5] == bytes.fromhex("e0 02 ff 2c 01")
    assert Apdu.decode(encoded) == Apdu(0xE0, 0x02, bytes(300))


def test_long_frame_round_trips_through_the_decoder() -> None:
    apdu = Apdu(0x80, 0x00, bytes(range(256)) * 2)
    assert FrameDecoder().feed(encode_frame(apdu.encode())) == [FrameReceived(apdu.encode())]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("80 00", "shorter than its 3-byte header"),
        ("80 00 02 01", "says 2 data bytes but 1 follow"),
        ("80 00 ff 01", "ends before it"),
        ("80 00 00 99", "says 0 data bytes but 1 follow"),
    ],
)
def test_malformed_apdus_are_rejected_with_a_clear_error(raw: str, message: str) -> None:
    with pytest.raises(ApduError, match=message):
        Apdu.decode(bytes.fromhex(raw))


def test_completions_are_recognised() -> None:
    assert Apdu.decode(bytes.fromhex("80 00 00")).is_success
    refused = Apdu.decode(failure(0xCC).encode())
    assert refused.is_failure and refused.result_code == 0xCC
    assert success(b"\x01").result_code is None


def test_ack_and_nak_bytes_between_frames_are_reported_in_order() -> None:
    wire = b"\x06" + encode_frame(b"\x80\x00\x00") + b"\x15"
    assert FrameDecoder().feed(wire) == [
        AckReceived(),
        FrameReceived(b"\x80\x00\x00"),
        NakReceived(),
    ]


def test_bad_crc_is_reported_and_the_next_frame_still_decodes() -> None:
    bad = bytearray(encode_frame(b"\x80\x00\x00"))
    bad[-1] ^= 0xFF
    events = FrameDecoder().feed(bytes(bad) + encode_frame(b"\x05\x01\x00"))
    assert isinstance(events[0], BadCrc) and events[0].apdu == b"\x80\x00\x00"
    assert events[1:] == [FrameReceived(b"\x05\x01\x00")]


def test_truncated_frame_is_abandoned_when_a_new_one_starts() -> None:
    good = encode_frame(b"\x05\x01\x00")
    events = FrameDecoder().feed(good[:5] + good)
    assert isinstance(events[0], FrameAborted)
    assert frames_in(events) == [b"\x05\x01\x00"]


def test_invalid_escape_drops_the_frame_and_recovers() -> None:
    events = FrameDecoder().feed(b"\x10\x02\x80\x10\x41" + encode_frame(b"\x80\x00\x00"))
    assert any(isinstance(e, FrameAborted) for e in events)
    assert frames_in(events) == [b"\x80\x00\x00"]


def test_oversize_frames_are_dropped_without_storing_them() -> None:
    decoder = FrameDecoder(max_apdu_bytes=16)
    events = decoder.feed(encode_frame(bytes(100)) + encode_frame(b"\x80\x00\x00"))
    assert isinstance(events[0], FrameAborted) and "longer than 16" in events[0].reason
    assert frames_in(events) == [b"\x80\x00\x00"]


def test_garbage_is_counted() -> None:
    events = FrameDecoder().feed(b"\x41\x42\x10\x43" + encode_frame(b"\x80\x00\x00"))
    assert events == [GarbageSkipped(4), FrameReceived(b"\x80\x00\x00")]


@given(st.binary(max_size=600))
def test_any_apdu_round_trips(apdu: bytes) -> None:
    assert FrameDecoder().feed(encode_frame(apdu)) == [FrameReceived(apdu)]


@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=1000))
def test_apdu_encode_decode_round_trips(cls: int, ins: int, data: bytes) -> None:
    assert Apdu.decode(Apdu(cls, ins, data).encode()) == Apdu(cls, ins, data)


@given(st.lists(st.binary(max_size=80), max_size=5), st.data())
def test_chunking_never_changes_what_is_decoded(apdus: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(encode_frame(a) for a in apdus)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert frames_in(feed_all(FrameDecoder(), chunks)) == apdus


@given(st.lists(st.tuples(NOISE, st.binary(max_size=60)), max_size=5))
def test_noise_between_frames_never_hides_a_frame(parts: list[tuple[bytes, bytes]]) -> None:
    wire = b"".join(noise + encode_frame(apdu) for noise, apdu in parts)
    assert frames_in(FrameDecoder().feed(wire)) == [apdu for _, apdu in parts]


@given(st.binary(max_size=400), st.binary(max_size=40))
def test_arbitrary_input_never_raises_and_the_next_frame_decodes(junk: bytes, apdu: bytes) -> None:
    decoder = FrameDecoder(max_apdu_bytes=64)
    decoder.feed(junk)  # whatever state this leaves, DLE STX restarts a frame
    assert frames_in(decoder.feed(encode_frame(apdu))) == [apdu]
