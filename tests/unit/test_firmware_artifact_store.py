"""The blob store: only a complete image with the declared size and SHA-256 becomes a blob."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from posfleet.firmware.artifact_store import ArtifactStore, hash_file
from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError

IMAGE = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(IMAGE).hexdigest()


async def _chunks(
    data: bytes, size: int = 65536, *, cut_at: int | None = None
) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        if cut_at is not None and start >= cut_at:
            raise ConnectionResetError("client went away")
        yield data[start : start + size]


def _leftovers(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.exists() else []


async def test_a_streamed_image_is_stored_under_its_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    blob = await store.put_stream(_chunks(IMAGE), sha256=SHA, size=len(IMAGE))
    assert blob.created
    assert blob.path == tmp_path / "artifacts" / SHA
    assert blob.path.read_bytes() == IMAGE
    assert _leftovers(store) == [SHA]


async def test_a_duplicate_is_a_no_op(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first = await store.put_stream(_chunks(IMAGE), sha256=SHA, size=len(IMAGE))
    mtime = first.path.stat().st_mtime_ns
    again = await store.put_stream(_chunks(IMAGE, 1000), sha256=SHA, size=len(IMAGE))
    assert not again.created
    assert again.path.stat().st_mtime_ns == mtime
    assert _leftovers(store) == [SHA]


async def test_a_cut_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        await store.put_stream(_chunks(IMAGE, cut_at=len(IMAGE) // 2), sha256=SHA, size=len(IMAGE))
    assert _leftovers(store) == []
    assert not store.has(SHA)


async def test_a_truncated_image_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactError, match="has 1048575 bytes") as caught:
        await store.put_stream(_chunks(IMAGE[:-1]), sha256=SHA, size=len(IMAGE))
    assert caught.value.reason == "size_mismatch"
    assert _leftovers(store) == []


async def test_one_byte_too_many_is_refused_as_it_arrives(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactError, match="larger than") as caught:
        await store.put_stream(_chunks(IMAGE + b"!"), sha256=SHA, size=len(IMAGE))
    assert caught.value.reason == "size_mismatch"
    assert _leftovers(store) == []


async def test_a_corrupt_byte_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    corrupt = bytearray(IMAGE)
    corrupt[12345] ^= 0xFF
    with pytest.raises(ArtifactError, match="SHA-256 is") as caught:
        await store.put_stream(_chunks(bytes(corrupt)), sha256=SHA, size=len(IMAGE))
    assert caught.value.reason == "sha256_mismatch"
    assert _leftovers(store) == []


def test_an_image_file_is_copied_with_progress(tmp_path: Path) -> None:
    image = tmp_path / "image.bin"
    image.write_bytes(IMAGE)
    assert hash_file(image) == (SHA, len(IMAGE))
    store = ArtifactStore(tmp_path / "artifacts")
    seen: list[int] = []
    blob = store.put_file(image, sha256=SHA, size=len(IMAGE), progress=seen.append)
    assert blob.created and sum(seen) == len(IMAGE)
    assert store.blob(SHA).read_bytes() == IMAGE


def test_a_missing_blob_and_a_bad_name_are_clear_errors(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFoundError, match="no stored image"):
        store.blob(SHA)
    with pytest.raises(ArtifactError, match="not a lowercase hex SHA-256"):
        store.path_for("../../etc/passwd")


def test_partials_left_by_a_crash_are_swept(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    writer = store.writer(SHA, len(IMAGE))
    writer.write(IMAGE[:1000])  # the process "dies" here: no commit, no abort
    assert len(_leftovers(store)) == 1
    assert store.remove_stale_partials(older_than_s=3600) == 0
    assert store.remove_stale_partials(older_than_s=-1) == 1
    assert _leftovers(store) == []
