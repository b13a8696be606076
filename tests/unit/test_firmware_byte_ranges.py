"""Range and If-Range decisions for a 1000-byte image, and the bandwidth token bucket."""

from __future__ import annotations

import pytest

from posfleet.firmware.bandwidth import TokenBucket, slice_bytes
from posfleet.firmware.byte_ranges import (
    ByteRange,
    RangeNotSatisfiable,
    etag_listed,
    if_range_allows,
    parse_range,
)

SIZE = 1000
ETAG = '"' + "ab" * 32 + '"'
DATE = "Wed, 02 Dec 2026 22:00:00 GMT"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=900-", (900, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=999-999", (999, 999)),
        ("BYTES = 10 - 20", (10, 20)),
    ],
)
def test_a_single_range_is_served(header: str, expected: tuple[int, int]) -> None:
    found = parse_range(header, SIZE)
    assert found == ByteRange(*expected, SIZE)
    assert found.content_range == f"bytes {expected[0]}-{expected[1]}/{SIZE}"


@pytest.mark.parametrize(
    "header", [None, "items=0-1", "bytes=0-1,5-6", "bytes=20-10", "bytes=x-", "bytes=-", "bytes"]
)
def test_a_range_that_cannot_be_used_sends_the_whole_image(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_if_range_must_name_this_very_image() -> None:
    assert if_range_allows(None, ETAG, DATE)
    assert if_range_allows(ETAG, ETAG, DATE)
    assert if_range_allows(DATE, ETAG, DATE)
    assert not if_range_allows("W/" + ETAG, ETAG, DATE)
    assert not if_range_allows('"other"', ETAG, DATE)
    assert not if_range_allows("Thu, 03 Dec 2026 22:00:00 GMT", ETAG, DATE)


def test_etag_lists() -> None:
    assert etag_listed(f'"x", {ETAG}', ETAG)
    assert etag_listed("*", ETAG)
    assert not etag_listed(None, ETAG)
    assert not etag_listed('"x"', ETAG)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_bucket_holds_its_rate_after_the_burst() -> None:
    clock = _Clock()
    bucket = TokenBucket(1000, burst=500, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await bucket.acquire(250)
    # 2500 bytes at 1000 B/s after a 500-byte burst: two seconds of waiting in all.
    assert clock.now == pytest.approx(2.0)


def test_reservations_queue_in_order_when_shared() -> None:
    clock = _Clock()
    bucket = TokenBucket(1000, burst=0, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve(100) for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])


def test_slices_follow_the_tightest_cap() -> None:
    assert slice_bytes(None, None) == 0
    assert slice_bytes(10_000_000, None) == 256 * 1024
    assert slice_bytes(1_000_000, 100_000) == 16 * 1024
