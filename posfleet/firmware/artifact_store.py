"""Content-addressed firmware blobs: ``<root>/<sha256>``, written so none is ever half there.

An image is streamed into a temporary file in the same folder while it is hashed, its
size and SHA-256 are checked against the manifest, the file is flushed to disk
(``fsync``) and only then renamed to its SHA-256, which is atomic on POSIX. A cut-off
upload, a wrong byte or one byte too many leaves no artifact behind, only a temporary
file that is removed at once (or by :meth:`ArtifactStore.remove_stale_partials` after a
crash). Storing an image that is already there is a no-op.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL_SUFFIX = ".part"
_PARTIAL_PREFIX = ".upload-"
READ_CHUNK = 1024 * 1024
"""Bytes read from an image file at a time when storing from disk."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob in the store; ``created`` is False when it was already there."""

    sha256: str
    size: int
    path: Path
    created: bool


def _check_sha256(sha256: str) -> str:
    if not _SHA256.match(sha256):
        raise ArtifactError(f"{sha256!r} is not a lowercase hex SHA-256", reason="bad_sha256")
    return sha256


class BlobWriter:
    """One image on its way in: write chunks, then :meth:`commit` or :meth:`abort`.

    Synchronous on purpose (the async store runs it in a worker thread), and refuses
    a byte past the expected size as soon as it arrives.
    """

    def __init__(self, root: Path, sha256: str, size: int) -> None:
        self.sha256 = _check_sha256(sha256)
        self.size = size
        self.received = 0
        self._final = root / sha256
        self._hash = hashlib.sha256()
        self._path = root / f"{_PARTIAL_PREFIX}{secrets.token_hex(8)}{PARTIAL_SUFFIX}"
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; :class:`ArtifactError` (and the file removed) if it is too much."""
        if self._file is None:
            raise ArtifactError("this upload is already finished", reason="closed")
        self.received += len(chunk)
        if self.received > self.size:
            self.abort()
            raise ArtifactError(
                f"the image is larger than the {self.size} bytes its manifest declares",
                reason="size_mismatch",
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> StoredBlob:
        """Check size and SHA-256, flush to disk and rename into place."""
        if self._file is None:
            raise ArtifactError("this upload is already finished", reason="closed")
        if self.received != self.size:
            self.abort()
            raise ArtifactError(
                f"the image has {self.received} bytes, its manifest declares {self.size}",
                reason="size_mismatch",
            )
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            self.abort()
            raise ArtifactError(
                f"the image's SHA-256 is {digest}, its manifest declares {self.sha256}",
                reason="sha256_mismatch",
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._final.exists():
            self._path.unlink(missing_ok=True)
            return StoredBlob(self.sha256, self.size, self._final, created=False)
        os.replace(self._path, self._final)
        _fsync_dir(self._final.parent)
        return StoredBlob(self.sha256, self.size, self._final, created=True)

    def abort(self) -> None:
        """Drop the temporary file; safe to call more than once."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (the directory entry is data too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ArtifactStore:
    """The folder of blobs (``var_dir/artifacts``), created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=0o750, parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the blob of ``sha256`` lives (whether or not it is there)."""
        return self.root / _check_sha256(sha256)

    def has(self, sha256: str) -> bool:
        """True if the blob of ``sha256`` is stored."""
        return self.path_for(sha256).is_file()

    def blob(self, sha256: str) -> Path:
        """The path of a stored blob; :class:`ArtifactNotFoundError` if it is missing."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise ArtifactNotFoundError(f"no stored image with SHA-256 {sha256}")
        return path

    def writer(self, sha256: str, size: int) -> BlobWriter:
        """A :class:`BlobWriter` for an image declared as ``size`` bytes with ``sha256``."""
        if size <= 0:
            raise ArtifactError("an image has at least one byte", reason="size_mismatch")
        self._ensure_root()
        return BlobWriter(self.root, sha256, size)

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, sha256: str, size: int
    ) -> StoredBlob:
        """Store the image arriving as ``chunks``; file writes run in a worker thread.

        If the stream fails (a cut connection), is too long, too short or hashes to
        something else, nothing is stored and the error propagates.
        """
        writer = await asyncio.to_thread(self.writer, sha256, size)
        try:
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(writer.write, chunk)
            return await asyncio.to_thread(writer.commit)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(writer.abort))
            raise

    def put_file(
        self,
        image: Path,
        *,
        sha256: str,
        size: int,
        progress: Callable[[int], None] | None = None,
    ) -> StoredBlob:
        """Store an image file from disk; ``progress(n)`` after each ``n`` bytes copied."""
        writer = self.writer(sha256, size)
        try:
            with image.open("rb") as source:
                while chunk := source.read(READ_CHUNK):
                    writer.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def remove_stale_partials(self, older_than_s: float = 3600.0) -> int:
        """Delete temporary files an interrupted process left behind; how many went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than_s
        for path in self.root.glob(f"{_PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d interrupted upload(s) from %s", removed, self.root)
        return removed


def hash_file(image: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks; never the whole file at once."""
    digest = hashlib.sha256()
    size = 0
    with image.open("rb") as source:
        while chunk := source.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest(), size
