"""The lane client: chunked reads give paho the same bytes, bulk PUBACKs the same packets.

The client leans on three of paho's internals; these tests run against the installed
paho, so an upgrade that moves them fails here rather than in production.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from posfleet.broker_bridge.lane_client import READ_CHUNK, ChunkedSocket, LaneClient


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_small_reads_return_the_stream_in_order_and_never_more_than_asked(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    stream = random.Random(7).randbytes(3 * READ_CHUNK + 123)
    theirs.sendall(stream[: 2 * READ_CHUNK])
    chunked = ChunkedSocket(ours)
    sizes = random.Random(8)
    got = bytearray()
    while len(got) < 2 * READ_CHUNK:
        want = sizes.choice((1, 1, 2, 300, 5000))
        data = chunked.recv(want)
        assert 0 < len(data) <= want
        got += data
    # Used up, with nothing more on the socket: the socket's own "would block".
    assert chunked.pending() == 0
    with pytest.raises(BlockingIOError):
        chunked.recv(1)
    theirs.sendall(stream[2 * READ_CHUNK :])
    while len(got) < len(stream):
        got += chunked.recv(sizes.choice((1, 700)))
    assert bytes(got) == stream


def test_pending_counts_what_the_chunk_still_holds(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"abcdef")
    chunked = ChunkedSocket(ours)
    assert chunked.recv(1) == b"a"
    assert (chunked.pending(), chunked.buffered) == (5, 5)
    assert chunked.recv(10) == b"bcdef"
    assert chunked.pending() == 0
    assert chunked.fileno() == ours.fileno()  # everything else is the socket's


def test_a_closed_peer_reads_as_end_of_stream(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"x")
    theirs.close()
    chunked = ChunkedSocket(ours)
    assert chunked.recv(4) == b"x"
    assert chunked.recv(4) == b""


def _queued_packets(client: mqtt.Client) -> bytes:
    packets = client._out_packet  # paho's queue of what it will write next
    data = b"".join(bytes(p["packet"]) for p in packets)
    packets.clear()
    return data


def test_bulk_acknowledgement_is_the_packets_paho_would_send_one_by_one() -> None:
    client = LaneClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    mids = [1, 2, 255, 256, 40_000, 65_535]
    for mid in mids:
        client.ack(mid, 1)
    one_by_one = _queued_packets(client)
    client.ack_all(mids)
    assert len(client._out_packet) == 1  # one write for the whole batch
    assert _queued_packets(client) == one_by_one
    client.ack_all([])
    assert not client._out_packet
