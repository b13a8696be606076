"""What the serial frame decoder promises, whatever the line delivers.

:class:`~posfleet.agent.serial.frames.FrameDecoder` never raises: every byte becomes an
event. On top of that, for any input:

- feeding the bytes in chunks gives the same events as feeding them at once (garbage
  counts aside, which a chunk boundary splits);
- no event carries more APDU bytes than the decoder's limit (memory stays bounded);
- every frame it accepts re-encodes (``encode_frame``) to bytes that decode to the same
  frame, and any bytes framed by ``encode_frame`` decode back;
- after any input, a good frame sent twice gets through (it resynchronises).
"""

from __future__ import annotations

from posfleet.agent.serial.frames import (
    MAX_APDU_BYTES,
    BadCrc,
    DecoderEvent,
    FrameDecoder,
    FrameReceived,
    GarbageSkipped,
    encode_frame,
)

PROBE_APDU = bytes((0x80, 0x00, 0x00))
"""A positive completion: the frame that must get through after any input."""


def _merge_garbage(events: list[DecoderEvent]) -> list[DecoderEvent]:
    merged: list[DecoderEvent] = []
    for event in events:
        previous = merged[-1] if merged else None
        if isinstance(event, GarbageSkipped) and isinstance(previous, GarbageSkipped):
            merged[-1] = GarbageSkipped(previous.count + event.count)
        else:
            merged.append(event)
    return merged


def check_frame_stream(data: bytes) -> None:
    """Assert the decoder's promises for ``data`` (byte 0: limit, byte 1: chunk size)."""
    if len(data) < 2:
        return
    limit, chunk, stream = 8 + data[0], 1 + data[1] % 13, data[2:]
    decoder = FrameDecoder(limit)
    whole = decoder.feed(stream)

    chunked_decoder = FrameDecoder(limit)
    chunked: list[DecoderEvent] = []
    for start in range(0, len(stream), chunk):
        chunked += chunked_decoder.feed(stream[start : start + chunk])
    assert _merge_garbage(chunked) == _merge_garbage(whole), "chunking changed the events"

    for event in whole:
        if isinstance(event, FrameReceived | BadCrc):
            assert len(event.apdu) <= limit, f"{len(event.apdu)} APDU bytes over limit {limit}"
        if isinstance(event, FrameReceived):
            again = FrameDecoder(limit).feed(encode_frame(event.apdu))
            assert again == [FrameReceived(event.apdu)], f"re-encoded frame decodes as {again}"

    if len(stream) <= MAX_APDU_BYTES:
        framed = FrameDecoder().feed(encode_frame(stream))
        assert framed == [FrameReceived(stream)], f"framed bytes decode as {framed}"

    events = decoder.feed(encode_frame(PROBE_APDU) * 2)
    assert events and events[-1] == FrameReceived(PROBE_APDU), f"no resync: {events}"
