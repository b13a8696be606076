"""Resumable firmware download over HTTP(S), with the standard library only.

The terminal has no aiohttp: the transfer runs :mod:`http.client` in a worker thread
(``asyncio.to_thread``), one request per attempt. Every byte received is appended to the
partial file and fed to the SHA-256 as it arrives, so a cut costs nothing that was
received: the next attempt asks for ``Range: bytes=<partial size>-`` with ``If-Range``
set to the validator the server gave (its ``ETag``; the quoted SHA-256 before one is
known). A server that answers ``200`` instead (the image changed, or no range support)
starts the file again from zero. After a restart the partial file is hashed once, then
the download continues from its size.

Transient trouble (connection refused or cut, timeouts, ``5xx``, ``429``, ``408``) is
retried with capped, jittered backoff (:class:`~posfleet.agent.backoff.Backoff`) until
``max_attempts`` attempts in a row made no progress. Permanent answers end the download at
once with :class:`~posfleet.agent.firmware_errors.DownloadFailed`: ``401``/``403`` (token
refused), ``404``/``410`` (no such artifact), ``416`` (the server's file is shorter than
the manifest says), any other ``4xx``, a size other than the manifest's, or a SHA-256
that does not match (the partial file is deleted: what arrived is not the signed image).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import logging
import os
import re
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from posfleet import __version__
from posfleet.agent.backoff import Backoff
from posfleet.agent.firmware_config import DEFAULT_CHUNK_BYTES
from posfleet.agent.firmware_errors import DownloadFailed

log = logging.getLogger(__name__)

SYNC_EVERY_BYTES = 4 << 20
"""The partial file is fsynced this often (and at the end of every attempt)."""
TERMINAL_HEADER = "X-Posfleet-Terminal-Id"
"""Where the agent names itself (``posfleet.firmware.download_tokens.TERMINAL_HEADER``;
not imported, since that package loads the signature code the agent loads only on demand)."""
MAX_REDIRECTS = 5
MAX_RESTARTS = 3
"""Restarts from zero (server ignoring the range) before the download is given up."""
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_REASONS = {
    401: "the server wants a token it accepts (401)",
    403: "download refused (403): the token is invalid, expired, replayed or for another terminal",
    404: "artifact not found on the server (404)",
    410: "artifact no longer available on the server (410)",
}

Progress = Callable[[int, int], None]
_T = TypeVar("_T")

STOP_WAIT_S = 10.0
"""Longest :meth:`ResumableDownload.settled` waits for a cancelled transfer's thread."""
"""Called on the event loop with (bytes on disk, image size) as the download advances."""


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    """What to fetch, with what token, and what it must turn out to be."""

    url: str
    token: str
    sha256: str
    size: int
    terminal_id: str = ""
    """Sent in ``X-Posfleet-Terminal-Id``: the download service checks the token is ours."""


@dataclass
class DownloadStats:
    """What one :class:`ResumableDownload` did, for logs and tests."""

    requests: int = 0
    range_starts: list[int] = field(default_factory=list)
    """The first byte asked for by each request (0: from the start)."""
    bytes_received: int = 0
    cuts: int = 0
    """Attempts that ended by a transient error."""
    restarts: int = 0
    """Times the partial file was thrown away and the download started from zero."""
    resumed_from: int = 0
    """Size of the partial file found at start (a previous run's bytes)."""


class _Transient(Exception):
    """An attempt failed in a way the next attempt may not."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class _Restart(Exception):
    """Throw the partial file away and ask again from byte 0."""


class ResumableDownload:
    """Fetch one image into ``partial``, verify it, and rename it to ``image``."""

    def __init__(
        self,
        request: DownloadRequest,
        partial: Path,
        image: Path,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        timeout_s: float = 30.0,
        backoff: Backoff | None = None,
        max_attempts: int = 30,
        ca_file: Path | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if chunk_bytes < 1 or max_attempts < 1 or request.size < 1:
            raise ValueError("chunk_bytes, max_attempts and the size must be positive")
        self.request = request
        self.partial = partial
        self.image = image
        self.etag_path = partial.with_suffix(".etag")
        self.chunk_bytes = chunk_bytes
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=300.0)
        self.max_attempts = max_attempts
        self.ca_file = ca_file
        self.stats = DownloadStats()
        self._progress = progress
        self._sleep = sleep
        self._url = request.url
        self._hasher = hashlib.sha256()
        self._offset = 0
        self._cancel = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fresh_retry_done = False
        self._running: asyncio.Future[Any] | None = None

    @property
    def offset(self) -> int:
        """Bytes of the image on disk so far."""
        return self._offset

    async def run(self) -> Path:
        """Download until the image is complete and verified; returns its path.

        Raises :class:`DownloadFailed` with the reason on a permanent error.
        """
        self._loop = asyncio.get_running_loop()
        if self.image.exists():
            digest = await self._in_thread(lambda: _hash_file(self.image))
            if digest.hexdigest() == self.request.sha256:
                return self.image
            self.image.unlink()
        await self._in_thread(self._rehash_partial)
        self.stats.resumed_from = self._offset
        failures = 0
        redirects = 0
        last_error = ""
        while True:
            if self._offset == self.request.size:
                if await self._in_thread(self._finish):
                    return self.image
                continue  # a resumed file did not verify: one fresh download
            if self.stats.restarts > MAX_RESTARTS:
                raise DownloadFailed(
                    f"the server keeps sending something other than the range asked for "
                    f"({self.stats.restarts} restarts from zero)",
                    reason="bad_range",
                )
            before = self._offset
            try:
                await self._attempt_in_thread()
                continue
            except _Redirect as redirect:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise DownloadFailed(
                        f"more than {MAX_REDIRECTS} redirects from {self.request.url}",
                        reason="redirect_loop",
                    ) from None
                self._url = redirect.location
                continue
            except _Transient as exc:
                self.stats.cuts += 1
                last_error = str(exc)
                retry_after = exc.retry_after
            if self._offset > before:
                failures = 0
                self.backoff.reset()
            failures += 1
            if failures >= self.max_attempts:
                raise DownloadFailed(
                    f"download gave up after {failures} attempts without progress "
                    f"({self._offset} of {self.request.size} bytes): {last_error}",
                    reason="unreachable",
                )
            delay = self.backoff.next_delay()
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff.cap_s))
            log.info(
                "firmware download cut at %d of %d bytes (%s); again in %.1f s",
                self._offset,
                self.request.size,
                last_error,
                delay,
            )
            await self._sleep(delay)

    def renew(self, url: str, token: str) -> None:
        """Use a fresh token (a re-published offer) from the next attempt on."""
        self.request = replace(self.request, url=url, token=token)
        self._url = url

    def cancel(self) -> None:
        """Stop a transfer under way (agent shutdown); its bytes stay on disk."""
        self._cancel.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    async def settled(self, timeout_s: float = STOP_WAIT_S) -> bool:
        """After :meth:`cancel`: wait until no worker thread touches the files any more.

        A cancelled task stops waiting at once, but its thread finishes the read or the
        rename it was in; whoever deletes the files afterwards waits for it here. False
        if it is still running after ``timeout_s`` (a connect stuck in the network).
        """
        running = self._running
        if running is None or running.done():
            return True
        await asyncio.wait({running}, timeout=timeout_s)
        return running.done()

    async def _in_thread(self, func: Callable[[], _T]) -> _T:
        # Shielded, so that the thread's end stays observable by settled() after the
        # task awaiting it was cancelled; the transfer itself stops through cancel().
        running = asyncio.ensure_future(asyncio.to_thread(func))
        running.add_done_callback(_consume)
        self._running = running
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            self.cancel()
            raise

    async def _attempt_in_thread(self) -> None:
        try:
            await self._in_thread(self._attempt)
        except _Restart:
            await self._in_thread(self._truncate)

    # -- in the worker thread -----------------------------------------------------------------

    def _rehash_partial(self) -> None:
        if not self.partial.exists():
            self._hasher, self._offset = hashlib.sha256(), 0
            return
        size = self.partial.stat().st_size
        if size > self.request.size:
            log.warning("%s is larger than the image; starting again", self.partial)
            self._truncate()
            return
        self._hasher = _hash_file(self.partial)
        self._offset = size

    def _truncate(self) -> None:
        self.partial.write_bytes(b"")
        self.etag_path.unlink(missing_ok=True)
        self._hasher, self._offset = hashlib.sha256(), 0
        self.stats.restarts += 1

    def _finish(self) -> bool:
        digest = self._hasher.hexdigest()
        if digest != self.request.sha256:
            resumed = self.stats.resumed_from > 0 or self.stats.cuts > 0
            self.partial.unlink(missing_ok=True)
            self.etag_path.unlink(missing_ok=True)
            if resumed and not self._fresh_retry_done:
                # Bytes kept across a power loss may not be the bytes received: download
                # once more from zero before calling the image itself wrong.
                log.warning("resumed image does not verify; downloading it once from zero")
                self._fresh_retry_done = True
                self._hasher, self._offset = hashlib.sha256(), 0
                self.stats.restarts += 1
                self.stats.resumed_from = 0
                return False
            raise DownloadFailed(
                f"downloaded image's SHA-256 {digest} does not match the manifest's "
                f"{self.request.sha256}; partial image deleted",
                reason="sha256_mismatch",
            )
        os.replace(self.partial, self.image)
        self.etag_path.unlink(missing_ok=True)
        _fsync_dir(self.image.parent)
        return True

    def _connection(self) -> tuple[http.client.HTTPConnection, str, str]:
        parts = urlsplit(self._url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadFailed(f"cannot download from {self._url!r}", reason="bad_url")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout_s, context=context
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout_s)
        return conn, target, parts.netloc

    def _headers(self, netloc: str) -> dict[str, str]:
        headers = {
            "User-Agent": f"posfleet-agent/{__version__}",
            "Accept-Encoding": "identity",
        }
        # The token is for the download service: never hand it to another host.
        if netloc == urlsplit(self.request.url).netloc:
            headers["Authorization"] = f"Bearer {self.request.token}"
            if self.request.terminal_id:
                headers[TERMINAL_HEADER] = self.request.terminal_id
        if self._offset > 0:
            headers["Range"] = f"bytes={self._offset}-"
            headers["If-Range"] = self._validator()
        return headers

    def _validator(self) -> str:
        try:
            etag = self.etag_path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            etag = ""
        # Weak validators may not be used with If-Range; the SHA-256 is the artifact's name.
        return etag if etag and not etag.startswith("W/") else f'"{self.request.sha256}"'

    def _attempt(self) -> None:
        if self._cancel.is_set():
            raise _Transient("cancelled")
        conn, target, netloc = self._connection()
        self._conn = conn
        self.stats.requests += 1
        self.stats.range_starts.append(self._offset)
        try:
            try:
                conn.request("GET", target, headers=self._headers(netloc))
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"request failed: {_describe(exc)}") from exc
            self._take(response)
        finally:
            self._conn = None
            conn.close()

    def _take(self, response: http.client.HTTPResponse) -> None:
        status = response.status
        size = self.request.size
        if status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            if not location:
                raise DownloadFailed(f"redirect {status} without a Location", reason="bad_redirect")
            raise _Redirect(urljoin(self._url, location))
        if status in _TRANSIENT_STATUS:
            raise _Transient(
                f"server answered {status} {response.reason}",
                retry_after=_retry_after(response.getheader("Retry-After")),
            )
        if status == 416:
            raise DownloadFailed(
                f"server refused the range from byte {self._offset} (416): its file is "
                f"shorter than the {size} bytes the manifest says",
                reason="http_416",
            )
        if status in _REASONS or (400 <= status < 500):
            body = _snippet(response)
            message = _REASONS.get(status, f"server answered {status} {response.reason}")
            raise DownloadFailed(message + (f": {body}" if body else ""), reason=f"http_{status}")
        if status == 200:
            if self._offset > 0:
                # The image changed or the server has no ranges: this body is from byte 0.
                log.info("server sent the whole image instead of a range; starting again")
                self._truncate()
            self._check_length(response, expected=size)
            self._remember_etag(response)
        elif status == 206:
            self._check_range(response)
        else:
            raise DownloadFailed(
                f"unexpected answer {status} {response.reason}", reason=f"http_{status}"
            )
        self._stream(response)

    def _check_length(self, response: http.client.HTTPResponse, *, expected: int) -> None:
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) != expected:
            raise DownloadFailed(
                f"server sends {int(length) + self._offset} bytes, the manifest says "
                f"{self.request.size}: truncated or wrong image",
                reason="size_mismatch",
            )

    def _check_range(self, response: http.client.HTTPResponse) -> None:
        match = _CONTENT_RANGE.match(response.getheader("Content-Range") or "")
        if match is None:
            raise _Transient("206 without a usable Content-Range")
        first, total = int(match.group(1)), match.group(3)
        if total != "*" and int(total) != self.request.size:
            raise DownloadFailed(
                f"server has {total} bytes, the manifest says {self.request.size}: truncated "
                "or wrong image",
                reason="size_mismatch",
            )
        if first != self._offset:
            log.warning(
                "server sent a range from %d, asked for %d; starting again", first, self._offset
            )
            raise _Restart
        self._check_length(response, expected=self.request.size - self._offset)

    def _remember_etag(self, response: http.client.HTTPResponse) -> None:
        etag = response.getheader("ETag")
        if etag:
            self.etag_path.write_text(etag.strip(), encoding="ascii")
        else:
            self.etag_path.unlink(missing_ok=True)

    def _stream(self, response: http.client.HTTPResponse) -> None:
        size = self.request.size
        unsynced = 0
        with self.partial.open("ab") as out:
            try:
                while self._offset < size:
                    if self._cancel.is_set():
                        raise _Transient("cancelled")
                    try:
                        data = response.read1(min(self.chunk_bytes, size - self._offset))
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Transient(
                            f"connection cut at byte {self._offset}: {_describe(exc)}"
                        ) from exc
                    if not data:
                        raise _Transient(f"connection closed at byte {self._offset} of {size}")
                    out.write(data)
                    self._hasher.update(data)
                    self._offset += len(data)
                    self.stats.bytes_received += len(data)
                    unsynced += len(data)
                    if unsynced >= SYNC_EVERY_BYTES:
                        out.flush()
                        os.fsync(out.fileno())
                        unsynced = 0
                    self._report()
                if response.read1(1):
                    raise DownloadFailed(
                        f"server sent more than the {size} bytes the manifest says",
                        reason="size_mismatch",
                    )
            finally:
                out.flush()
                os.fsync(out.fileno())

    def _report(self) -> None:
        if self._progress is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._progress, self._offset, self.request.size)


def _consume(done: asyncio.Future[Any]) -> None:
    """Retrieve a worker's outcome nobody awaits any more (its task was cancelled)."""
    if not done.cancelled():
        done.exception()


def _hash_file(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _snippet(response: http.client.HTTPResponse) -> str:
    try:
        body = response.read(300)
    except (OSError, http.client.HTTPException):
        return ""
    return " ".join(body.decode("utf-8", "replace").split())[:200]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
