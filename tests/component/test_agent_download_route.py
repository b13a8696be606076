"""The agent's downloader against the centre's real download route (tokens, Range, cuts).

The route is :mod:`posfleet.dashboard.firmware_download` in a real aiohttp server; the
connection is cut mid-body by a TCP proxy in between, which forwards each response up
to a byte budget and then closes both sides, as a dying mobile link does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from posfleet.agent.backoff import Backoff
from posfleet.agent.firmware_download import DownloadRequest, ResumableDownload
from posfleet.agent.firmware_errors import DownloadFailed
from posfleet.contract import utcnow
from posfleet.dashboard.firmware_download import FIRMWARE_KEY, FirmwareDelivery, add_routes
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.download_tokens import DownloadTokens, download_path
from posfleet.firmware.signing import TrustedKeys

IMAGE = random.Random(11).randbytes(2 * 1024 * 1024 + 77)
SHA = hashlib.sha256(IMAGE).hexdigest()
TOKENS = DownloadTokens(bytes(range(64, 96)))
TERMINAL = "T-ROUTE-1"


@dataclass
class CuttingProxy:
    """Forwards TCP to ``upstream``; the n-th response is cut after ``budgets[n]`` bytes."""

    upstream: int
    budgets: list[int] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None
    ) -> None:
        sent = 0
        while data := await src.read(65536):
            if limit is not None and sent + len(data) >= limit:
                dst.write(data[: limit - sent])
                await dst.drain()
                return
            dst.write(data)
            await dst.drain()
            sent += len(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        budget = self.budgets.pop(0) if self.budgets else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, None)),
            asyncio.create_task(self._pump(up_reader, writer, budget)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()


@asynccontextmanager
async def centre(tmp_path: Path, *, open_actions: set[str]) -> AsyncIterator[CuttingProxy]:
    """The download route with the image stored, behind a cutting proxy."""
    store = ArtifactStore(tmp_path / "artifacts")
    source = tmp_path / "image.bin"
    source.write_bytes(IMAGE)
    store.put_file(source, sha256=SHA, size=len(IMAGE))

    async def gate(action_id: str) -> bool:
        return action_id in open_actions

    app = web.Application()
    app[FIRMWARE_KEY] = FirmwareDelivery(
        store=store, trusted=TrustedKeys(), tokens=TOKENS, is_action_open=gate
    )
    add_routes(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy = CuttingProxy(upstream=runner.addresses[0][1])
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()


async def _no_wait(_delay: float) -> None:
    return None


def _download(
    proxy: CuttingProxy, tmp_path: Path, token: str, *, terminal: str = TERMINAL
) -> ResumableDownload:
    url = f"http://127.0.0.1:{proxy.port}{download_path(SHA)}"
    return ResumableDownload(
        DownloadRequest(url, token, SHA, len(IMAGE), terminal_id=terminal),
        tmp_path / "agent" / f"{SHA}.part",
        tmp_path / "agent" / f"{SHA}.img",
        chunk_bytes=32 * 1024,
        timeout_s=5,
        backoff=Backoff(base_s=0.1, cap_s=0.5),
        sleep=_no_wait,
    )


def _token(action: str = "A-1", terminal: str = TERMINAL, hours: float = 1) -> str:
    return TOKENS.issue(terminal, action, SHA, utcnow() + timedelta(hours=hours))


async def test_cut_three_times_the_download_resumes_and_receives_no_byte_twice(
    tmp_path: Path,
) -> None:
    (tmp_path / "agent").mkdir()
    async with centre(tmp_path, open_actions={"A-1"}) as proxy:
        proxy.budgets = [300_001, 500_003, 700_007]
        download = _download(proxy, tmp_path, _token())
        image = await download.run()
    assert hashlib.sha256(image.read_bytes()).hexdigest() == SHA
    assert download.stats.cuts == 3 and proxy.connections == 4
    starts = download.stats.range_starts
    assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == 4
    # Every body byte that reached the agent was kept: the cuts cost no re-sent byte.
    assert download.stats.bytes_received == len(IMAGE)


@pytest.mark.parametrize(
    ("token", "terminal", "words"),
    [
        (lambda: _token(terminal="T-OTHER"), TERMINAL, "other-terminal|not T-ROUTE-1"),
        (lambda: _token(hours=-1), TERMINAL, "expired"),
        (lambda: _token(action="A-DONE"), TERMINAL, "finished"),
        (lambda: "v1." + "x" * 40, TERMINAL, "malformed"),
    ],
)
async def test_refused_tokens_end_the_download_at_once_with_the_routes_reason(
    tmp_path: Path, token: object, terminal: str, words: str
) -> None:
    (tmp_path / "agent").mkdir()
    async with centre(tmp_path, open_actions={"A-1"}) as proxy:
        assert callable(token)
        download = _download(proxy, tmp_path, token(), terminal=terminal)
        with pytest.raises(DownloadFailed, match=words) as refused:
            await download.run()
    assert refused.value.reason == "http_403"
    assert download.stats.requests == 1 and proxy.connections == 1
