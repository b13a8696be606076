"""Artifact records on SQLite and PostgreSQL: one per image, found by id, name@version, prefix."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import SignedManifest
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.artifacts import Artifacts
from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError, SignatureError
from posfleet.store.accounts import list_audit
from tests.harness.firmware_release import ReleaseKey, image_bytes, release_key, trusting


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


@pytest.fixture
def key(tmp_path: Path) -> ReleaseKey:
    return release_key(tmp_path / "keys", "rel-1")


@pytest.fixture
def artifacts(engine: AsyncEngine, tmp_path: Path, key: ReleaseKey) -> Artifacts:
    return Artifacts(engine, ArtifactStore(tmp_path / "artifacts"), trusting(key))


async def _upload(artifacts: Artifacts, signed: SignedManifest, image: bytes) -> bool:
    result = await artifacts.upload(signed, _chunks(image), uploaded_by="ops:alice")
    return result.created


async def test_an_upload_is_recorded_with_its_manifest_and_audited(
    artifacts: Artifacts, key: ReleaseKey, engine: AsyncEngine
) -> None:
    image = image_bytes(300_000)
    signed = key.sign(image, models=("V400m", "P630"), min_version="5.0.0")
    assert await _upload(artifacts, signed, image)
    found = await artifacts.find("pos-os@5.3.0")
    assert (found.size, found.models, found.min_version) == (300_000, ["V400m", "P630"], "5.0.0")
    assert found.signed_manifest == signed
    assert found.uploaded_by == "ops:alice" and found.uploaded_at.tzinfo is not None
    assert (await artifacts.find(str(found.id))).id == found.id
    assert (await artifacts.find(found.sha256[:6].upper())).id == found.id
    async with engine.connect() as conn:
        audit = await list_audit(conn)
    assert [(a.actor, a.action, a.detail["sha256"]) for a in audit] == [
        ("ops:alice", "firmware.upload", found.sha256)
    ]


async def test_concurrent_uploads_of_one_image_make_one_artifact(
    artifacts: Artifacts, key: ReleaseKey
) -> None:
    image = image_bytes(200_000, seed=3)
    signed = key.sign(image)
    created = await asyncio.gather(*(_upload(artifacts, signed, image) for _ in range(4)))
    assert created.count(True) == 1
    assert len(await artifacts.list()) == 1


async def test_refusals_leave_no_record(
    artifacts: Artifacts, key: ReleaseKey, tmp_path: Path
) -> None:
    image = image_bytes(100_000)
    assert await _upload(artifacts, key.sign(image), image)
    other = image_bytes(100_000, seed=9)
    with pytest.raises(ArtifactError) as conflict:
        await _upload(artifacts, key.sign(other), other)
    assert conflict.value.reason == "conflict"
    with pytest.raises(ArtifactError) as version:
        await _upload(artifacts, key.sign(other, version="5.3"), other)
    assert version.value.reason == "bad_version"
    stranger = release_key(tmp_path / "stranger", "rel-1")
    with pytest.raises(SignatureError):
        await _upload(artifacts, stranger.sign(other, version="5.4.0"), other)
    assert [a.version for a in await artifacts.list()] == ["5.3.0"]


def _two_images_sharing_a_prefix(digits: int = 6) -> tuple[bytes, bytes]:
    seen: dict[str, bytes] = {}
    for n in range(1_000_000):
        image = n.to_bytes(8, "big") * 8
        prefix = hashlib.sha256(image).hexdigest()[:digits]
        if prefix in seen:
            return seen[prefix], image
        seen[prefix] = image
    raise AssertionError("no shared prefix found")


async def test_lookups_that_match_nothing_or_too_much(
    artifacts: Artifacts, key: ReleaseKey
) -> None:
    first, second = _two_images_sharing_a_prefix()
    await _upload(artifacts, key.sign(first, version="1.0.0"), first)
    await _upload(artifacts, key.sign(second, version="1.0.1"), second)
    prefix = hashlib.sha256(first).hexdigest()[:6]
    with pytest.raises(ArtifactError, match="give more digits") as ambiguous:
        await artifacts.find(prefix)
    assert ambiguous.value.reason == "ambiguous"
    assert (await artifacts.find(hashlib.sha256(second).hexdigest()[:12])).version == "1.0.1"
    with pytest.raises(ArtifactNotFoundError):
        await artifacts.find("pos-os@9.9.9")
    with pytest.raises(ArtifactNotFoundError, match="at least 6 hex digits"):
        await artifacts.find("abc")


async def test_the_list_pages_newest_first(artifacts: Artifacts, key: ReleaseKey) -> None:
    for n in range(25):
        image = image_bytes(1000, seed=n)
        await _upload(artifacts, key.sign(image, version=f"1.0.{n}"), image)
    page = await artifacts.list(limit=10)
    assert [a.version for a in page] == [f"1.0.{n}" for n in range(24, 14, -1)]
    rest = await artifacts.list(limit=100, before_id=page[-1].id)
    assert [a.version for a in rest] == [f"1.0.{n}" for n in range(14, -1, -1)]
