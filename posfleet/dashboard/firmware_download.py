"""``GET /firmware/download/{sha256}``: artifact bytes for terminals, resumable, token only.

No staff login: the request is authorised by the offer's download token alone
(``Authorization: Bearer <token>`` or ``?token=``), and the terminal names itself in
``X-Posfleet-Terminal-Id``. A refusal is ``403 application/problem+json`` whose
``reason`` is one word (``expired``, ``other-terminal``, ``forged``,
``replayed-after-final`` ...), counted by reason.

The bytes go out with ``sendfile`` straight from the blob file, never through Python
memory; under a bandwidth cap they go in slices, each after its bytes are reserved in
the per-download and the total token bucket. ``Range`` (one range), ``If-Range`` and
``ETag`` (the quoted SHA-256) let a terminal resume after every cut.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import BinaryIO

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard.access import public
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.firmware.actions import is_action_open
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.bandwidth import TokenBucket, slice_bytes
from posfleet.firmware.byte_ranges import (
    RangeNotSatisfiable,
    etag_listed,
    if_range_allows,
    parse_range,
)
from posfleet.firmware.download_tokens import (
    TERMINAL_HEADER,
    DownloadTokenError,
    DownloadTokens,
    TokenRefusal,
    bearer_token,
    download_path,
)
from posfleet.firmware.settings import FirmwareSettings
from posfleet.firmware.signing import TrustedKeys

log = logging.getLogger(__name__)

ActionGate = Callable[[str], Awaitable[bool]]
"""``is_action_open(action_id)``: False once the Action reached a final state (or is unknown)."""

DOWNLOAD_ROUTE = download_path("{sha256}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FALLBACK_CHUNK = 256 * 1024


def action_gate_for(engine: AsyncEngine) -> ActionGate:
    """The default gate: :func:`posfleet.firmware.actions.is_action_open` on ``engine``."""

    async def gate(action_id: str) -> bool:
        async with engine.connect() as conn:
            return await is_action_open(conn, action_id)

    return gate


@dataclass
class DownloadStats:
    """Counters for the operator: downloads begun, finished, cut, bytes, refusals."""

    started: int = 0
    completed: int = 0
    interrupted: int = 0
    active: int = 0
    bytes_sent: int = 0
    refused: Counter[str] = field(default_factory=Counter)


@dataclass
class FirmwareDelivery:
    """What the firmware routes need: blobs, release keys, token key and bandwidth caps."""

    store: ArtifactStore
    trusted: TrustedKeys
    tokens: DownloadTokens
    per_download_bps: int | None = None
    total_bps: int | None = None
    max_upload_bytes: int = 2 * 1024**3
    is_action_open: ActionGate | None = None
    """None: :func:`action_gate_for` the app's engine."""
    stats: DownloadStats = field(default_factory=DownloadStats)
    _total_bucket: TokenBucket | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.total_bps is not None:
            self._total_bucket = TokenBucket(self.total_bps)

    @classmethod
    def from_settings(
        cls, settings: FirmwareSettings, *, artifacts_dir: Path, token_secret: bytes
    ) -> FirmwareDelivery:
        """Build from the ``[firmware]`` settings; reads the release key files now."""
        return cls(
            store=ArtifactStore(artifacts_dir),
            trusted=settings.trusted(),
            tokens=DownloadTokens(token_secret),
            per_download_bps=settings.download_rate_limit_bps,
            total_bps=settings.download_total_rate_limit_bps,
            max_upload_bytes=settings.max_upload_bytes,
        )

    def buckets(self) -> list[TokenBucket]:
        """The buckets one new download must pass: its own, then the shared one."""
        found = [TokenBucket(self.per_download_bps)] if self.per_download_bps else []
        if self._total_bucket is not None:
            found.append(self._total_bucket)
        return found


FIRMWARE_KEY = web.AppKey("firmware_delivery", FirmwareDelivery)

MetricFamily = tuple[str, str, str, list[tuple[str, float]]]


def download_metric_families(stats: DownloadStats) -> list[MetricFamily]:
    """``(name, type, help, samples)`` of the download counters, for ``/metrics``."""
    refused = [(f'{{reason="{reason}"}}', float(n)) for reason, n in sorted(stats.refused.items())]
    return [
        ("posfleet_firmware_downloads_started_total", "counter",
         "Firmware downloads (whole or ranged) whose bytes began to flow.",
         [("", stats.started)]),
        ("posfleet_firmware_downloads_completed_total", "counter",
         "Firmware downloads sent to the last byte asked for.", [("", stats.completed)]),
        ("posfleet_firmware_downloads_interrupted_total", "counter",
         "Firmware downloads cut before their last byte (the terminal resumes).",
         [("", stats.interrupted)]),
        ("posfleet_firmware_downloads_active", "gauge",
         "Firmware downloads sending right now.", [("", stats.active)]),
        ("posfleet_firmware_download_bytes_total", "counter",
         "Firmware bytes sent to terminals.", [("", stats.bytes_sent)]),
        ("posfleet_firmware_downloads_refused_total", "counter",
         "Firmware download requests refused, by reason (expired, other-terminal ...).",
         refused),
    ]  # fmt: skip


def problem(status: int, title: str, detail: str, reason: str) -> web.Response:
    """An RFC 9457 problem document with the refusal's ``reason`` word."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    response = web.json_response(
        {**body, "code": reason, "reason": reason},
        status=status,
        content_type="application/problem+json",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse(delivery: FirmwareDelivery, status: int, reason: str, detail: str) -> web.Response:
    delivery.stats.refused[reason] += 1
    log.info("firmware download refused (%s): %s", reason, detail)
    title = {403: "Forbidden", 404: "Not Found", 416: "Range Not Satisfiable"}.get(status, "Error")
    return problem(status, title, detail, reason)


@public
async def download(request: web.Request) -> web.StreamResponse:
    """Serve an artifact's bytes (whole, or the one ``Range`` asked for) to its terminal."""
    delivery = request.app.get(FIRMWARE_KEY)
    if delivery is None:
        return problem(503, "Service Unavailable", "firmware delivery is not configured", "off")
    sha256 = request.match_info["sha256"]
    if not _SHA256.match(sha256):
        return _refuse(delivery, 404, "not-found", "the path must end in a lowercase SHA-256")
    token = bearer_token(request.headers.get("Authorization"), request.query.get("token"))
    try:
        grant = delivery.tokens.verify(
            token, sha256=sha256, terminal_id=request.headers.get(TERMINAL_HEADER), now=utcnow()
        )
    except DownloadTokenError as exc:
        return _refuse(delivery, 403, exc.reason.value, str(exc))
    gate = delivery.is_action_open or action_gate_for(request.app[ENGINE_KEY])
    if not await gate(grant.action_id):
        return _refuse(
            delivery,
            403,
            TokenRefusal.REPLAYED_AFTER_FINAL.value,
            f"action {grant.action_id} is finished; its token no longer downloads anything",
        )
    path = delivery.store.path_for(sha256)
    try:
        fobj = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:
        return _refuse(delivery, 404, "not-found", f"no stored image with SHA-256 {sha256}")
    try:
        return await _send(request, delivery, fobj, sha256)
    finally:
        await asyncio.to_thread(fobj.close)


async def _send(
    request: web.Request, delivery: FirmwareDelivery, fobj: BinaryIO, sha256: str
) -> web.StreamResponse:
    st = os.fstat(fobj.fileno())
    size = st.st_size
    etag = f'"{sha256}"'
    last_modified = formatdate(st.st_mtime, usegmt=True)
    headers = {
        "ETag": etag,
        "Last-Modified": last_modified,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-transform",
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(sha256)).decode()}:",
    }
    if_match = request.headers.get("If-Match")
    if if_match is not None and not etag_listed(if_match, etag):
        return web.Response(status=412, headers=headers)
    if etag_listed(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    wanted = None
    if if_range_allows(request.headers.get("If-Range"), etag, last_modified):
        try:
            wanted = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable as exc:
            refusal = _refuse(delivery, 416, "range-not-satisfiable", str(exc))
            refusal.headers.update({"Content-Range": f"bytes */{size}", **headers})
            return refusal
    offset, count = (wanted.start, wanted.length) if wanted else (0, size)
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_type = "application/octet-stream"
    response.content_length = count
    if wanted is not None:
        response.headers["Content-Range"] = wanted.content_range
    await response.prepare(request)
    if request.method == "HEAD" or count == 0:
        await response.write_eof()
        return response
    stats = delivery.stats
    stats.started += 1
    stats.active += 1
    sent = 0
    try:
        sent = await _stream(request, response, delivery, fobj, offset, count)
        await response.write_eof()
        stats.completed += 1
    except (ConnectionError, asyncio.CancelledError):
        stats.interrupted += 1
        log.debug("firmware download of %s cut after %d bytes", sha256[:12], sent)
        raise
    finally:
        stats.active -= 1
    return response


async def _stream(  # noqa: PLR0917 (one call site, every argument is needed)
    request: web.Request,
    response: web.StreamResponse,
    delivery: FirmwareDelivery,
    fobj: BinaryIO,
    offset: int,
    count: int,
) -> int:
    """Send ``count`` bytes from ``offset``; sendfile unless the transport cannot."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the terminal went away")
    loop = asyncio.get_running_loop()
    buckets = delivery.buckets()
    step = slice_bytes(delivery.per_download_bps, delivery.total_bps) or count
    sent = 0
    use_sendfile = True
    while sent < count:
        n = min(step, count - sent)
        for bucket in buckets:
            await bucket.acquire(n)
        if use_sendfile:
            try:
                n = await loop.sendfile(transport, fobj, offset + sent, n)
            except NotImplementedError:  # TLS or another transport without sendfile
                use_sendfile = False
        if not use_sendfile:
            n = await _write_chunks(response, fobj, offset + sent, n)
        if n == 0:
            raise ConnectionResetError("the image file ended early")
        sent += n
        delivery.stats.bytes_sent += n
    return sent


async def _write_chunks(
    response: web.StreamResponse, fobj: BinaryIO, offset: int, count: int
) -> int:
    """Read and write ``count`` bytes in bounded chunks (no whole image in memory)."""
    written = 0
    while written < count:
        chunk = await asyncio.to_thread(
            os.pread, fobj.fileno(), min(_FALLBACK_CHUNK, count - written), offset + written
        )
        if not chunk:
            break
        await response.write(chunk)
        written += len(chunk)
    return written


def add_routes(app: web.Application) -> None:
    """Register the download route (GET and HEAD)."""
    app.router.add_get(DOWNLOAD_ROUTE, download)
