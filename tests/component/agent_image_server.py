"""A real aiohttp server that serves one firmware image with ``Range``, and misbehaves on cue.

Used by the downloader and updater tests. Knobs (change them at any time):

- ``cut_after``: for each of the next requests, send that many body bytes, then close
  the connection (the test's way of killing it mid-body);
- ``statuses``: answer the next requests with these HTTP statuses instead;
- ``ignore_range``: always send the whole image (200), as a server without range support;
- ``delay_per_chunk_s``: a slow line, so a test can act in the middle of a download;
- ``cut_now``: cut the response being sent, wherever it is.

Every request is recorded: its ``Range`` start, the headers, and the body bytes sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

CHUNK = 8192


@dataclass
class Served:
    """One request the server answered."""

    range_start: int
    headers: dict[str, str]
    status: int
    sent: int = 0
    cut: bool = False


@dataclass
class ImageServer:
    """The image and the knobs; :attr:`url` once started."""

    image: bytes
    token: str = "t" * 32
    cut_after: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    ignore_range: bool = False
    delay_per_chunk_s: float = 0.0
    cut_now: bool = False
    served: list[Served] = field(default_factory=list)
    url: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.image).hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    async def handle(self, request: web.Request) -> web.StreamResponse:
        start = 0
        wanted = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if wanted and not self.ignore_range and (if_range is None or if_range == self.etag):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
        record = Served(start, dict(request.headers), 200)
        self.served.append(record)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            record.status = 403
            return web.Response(status=403, text="token refused")
        if self.statuses:
            record.status = self.statuses.pop(0)
            return web.Response(status=record.status, text=f"status {record.status} on cue")
        size = len(self.image)
        if start >= size:
            record.status = 416
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        response = web.StreamResponse(status=206 if start else 200)
        record.status = response.status
        response.headers["ETag"] = self.etag
        response.headers["Accept-Ranges"] = "bytes"
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        response.content_length = size - start
        await response.prepare(request)
        limit = self.cut_after.pop(0) if self.cut_after else None
        offset = start
        while offset < size:
            n = min(CHUNK, size - offset)
            if limit is not None:
                n = min(n, limit - record.sent)
            if n > 0:
                try:
                    await response.write(self.image[offset : offset + n])
                except ConnectionError:
                    return response  # the client went away
                offset += n
                record.sent += n
            if self.cut_now or (limit is not None and record.sent >= limit):
                self.cut_now = False
                record.cut = True
                assert request.transport is not None
                # close(), not abort(): the transport sends what it holds, then cuts.
                request.transport.close()
                return response
            if self.delay_per_chunk_s:
                await asyncio.sleep(self.delay_per_chunk_s)
        await response.write_eof()
        return response


@asynccontextmanager
async def serve_image(server: ImageServer) -> AsyncIterator[ImageServer]:
    """Run ``server`` on a free loopback port until the block ends."""
    app = web.Application()
    app.router.add_get("/firmware/download/{sha256}", server.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}/firmware/download/{server.sha256}"
    try:
        yield server
    finally:
        await runner.cleanup()
