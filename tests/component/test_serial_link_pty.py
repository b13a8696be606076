"""The asyncio serial link against the simulated terminal over a real pty (and TCP)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.agent.drivers import MaintenanceDriver
from posfleet.agent.serial import (
    NoAckError,
    PortOpenError,
    ReplyTimeoutError,
    SerialLink,
    SerialLinkError,
)
from posfleet.simulator import LinkFaults, SimulatedTerminal, serve_pty, serve_tcp

FAST_T3 = 0.3  # the default T3 is 5 s; the tests need not wait for it


def terminal() -> SimulatedTerminal:
    return SimulatedTerminal("SIM-PTY-1", seed=11, clock=lambda: 5000.0)


async def test_identify_and_health_over_a_pty() -> None:
    term = terminal()
    async with serve_pty(term) as path, SerialLink(path, ack_timeout=FAST_T3) as link:
        assert path.startswith("/dev/")
        driver = MaintenanceDriver(link)
        assert (await driver.identify()).serial == "SIM-PTY-1"
        assert await driver.read_health() == term.health()
    assert link.stats.frames_sent == 2 and link.stats.resends == 0


async def test_a_nak_from_the_terminal_is_retried_and_succeeds() -> None:
    faults = LinkFaults(nak_next=2)
    async with (
        serve_pty(terminal(), faults=faults) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        identity = await MaintenanceDriver(link).identify()
    assert identity.model == "PF-M100"
    assert (link.stats.frames_sent, link.stats.naks_received) == (3, 2)


async def test_a_lost_frame_is_sent_again_after_t3() -> None:
    async with (
        serve_pty(terminal(), faults=LinkFaults(drop_next=1)) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        await MaintenanceDriver(link).identify()
    assert (link.stats.ack_timeouts, link.stats.frames_sent) == (1, 2)


async def test_a_silent_terminal_gives_no_ack_after_three_sends() -> None:
    async with (
        serve_pty(terminal(), faults=LinkFaults(silent=True)) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        with pytest.raises(NoAckError, match="did not acknowledge after 3 sends"):
            await MaintenanceDriver(link).read_health()
    assert link.stats.frames_sent == 3


async def test_a_terminal_that_acks_but_never_replies_times_out() -> None:
    faults = LinkFaults(swallow_replies=1)
    async with (
        serve_pty(terminal(), faults=faults) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        driver = MaintenanceDriver(link, reply_timeout=0.5)
        with pytest.raises(ReplyTimeoutError, match=r"sent no reply in 0\.5 s"):
            await driver.identify()
        # The next exchange is unaffected.
        assert (await driver.identify()).serial == "SIM-PTY-1"
    assert link.stats.frames_sent == 2


async def test_line_noise_still_yields_correct_health() -> None:
    term = terminal()
    async with (
        serve_pty(term, faults=LinkFaults(noise=True), seed=5) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        driver = MaintenanceDriver(link)
        for _ in range(5):
            assert await driver.read_health() == term.health()
    assert link.stats.garbage_bytes > 0
    assert link.stats.resends == 0


async def test_the_same_link_works_over_tcp() -> None:
    term = terminal()
    async with serve_tcp(term) as url, SerialLink(url, ack_timeout=FAST_T3) as link:
        assert url.startswith("socket://127.0.0.1:")
        assert await MaintenanceDriver(link).read_health() == term.health()


async def test_a_missing_port_is_a_clear_open_error(tmp_path: Path) -> None:
    with pytest.raises(PortOpenError, match="cannot open serial port"):
        async with SerialLink(str(tmp_path / "ttyUSB9")):
            pass


async def test_a_vanished_terminal_fails_fast_and_the_link_reopens_when_it_returns() -> None:
    term = terminal()
    async with serve_tcp(term) as url:
        link = SerialLink(url, ack_timeout=FAST_T3)
        driver = MaintenanceDriver(link)
        await driver.identify()
    try:
        # The hang-up is noticed at once instead of waiting out T3 three times.
        async with asyncio.timeout(FAST_T3):
            with pytest.raises(SerialLinkError):
                await driver.identify()
        async with serve_tcp(term, port=int(url.rsplit(":", 1)[1])):
            assert (await driver.identify()).serial == "SIM-PTY-1"
        assert link.stats.reopens == 1
    finally:
        link.close()
