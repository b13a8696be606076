"""Uploading, listing and showing artifacts through the API, over real SQLite and disk."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import SignedManifest
from posfleet.dashboard import create_app
from posfleet.dashboard.firmware_download import FirmwareDelivery
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.store.accounts import Role, create_api_token, list_audit
from tests.harness.firmware_release import ReleaseKey, image_bytes, release_key, trusting

IMAGE = image_bytes(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(IMAGE).hexdigest()
API = "/api/v1/firmware/artifacts"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, ReleaseKey]:
    return {
        "current": release_key(tmp_path / "keys", "release-2026"),
        "next": release_key(tmp_path / "keys", "release-2027"),
        "revoked": release_key(tmp_path / "keys", "release-2025"),
        "stranger": release_key(tmp_path / "elsewhere", "release-2026"),
    }


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
async def client(
    sqlite_engine: AsyncEngine, store: ArtifactStore, keys: dict[str, ReleaseKey]
) -> AsyncIterator[Client]:
    delivery = FirmwareDelivery(
        store=store,
        trusted=trusting(keys["current"], keys["next"], keys["revoked"], revoked=("release-2025",)),
        tokens=DownloadTokens(bytes(32)),
        max_upload_bytes=8 * 1024 * 1024,
    )
    app = create_app(sqlite_engine, session_secret=bytes(32), firmware=delivery)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def ops(sqlite_engine: AsyncEngine) -> dict[str, str]:
    return await _auth(sqlite_engine, Role.OPS)


async def _auth(engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, f"ci-{role}", role)
    return {"Authorization": f"Bearer {token}"}


def _form(signed: SignedManifest, image: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("manifest", signed.model_dump_json(), content_type="application/json")
    form.add_field("image", image, filename="image.bin", content_type="application/octet-stream")
    return form


async def _upload(
    client: Client, headers: dict[str, str], signed: SignedManifest, image: bytes = IMAGE
) -> tuple[int, dict[str, Any]]:
    response = await client.post(API, data=_form(signed, image), headers=headers)
    return response.status, await response.json()


async def test_ops_uploads_a_signed_image_and_everyone_can_find_it(
    client: Client, sqlite_engine: AsyncEngine, store: ArtifactStore, keys: dict[str, ReleaseKey]
) -> None:
    ops = await _auth(sqlite_engine, Role.OPS)
    status, body = await _upload(client, ops, keys["current"].sign(IMAGE, models=("V400m", "P630")))
    assert status == 201 and body["created"] is True
    artifact = body["artifact"]
    assert (artifact["name"], artifact["version"], artifact["sha256"]) == ("pos-os", "5.3.0", SHA)
    assert artifact["models"] == ["V400m", "P630"]
    assert artifact["uploaded_by"] == "token:ci-ops"
    assert store.blob(SHA).read_bytes() == IMAGE

    viewer = await _auth(sqlite_engine, Role.VIEWER)
    listing = await (await client.get(API, headers=viewer)).json()
    assert [item["sha256"] for item in listing["items"]] == [SHA]
    for ref in (str(artifact["id"]), "pos-os@5.3.0", SHA[:10]):
        shown = await client.get(f"{API}/{ref}", headers=viewer)
        assert (await shown.json())["artifact"]["id"] == artifact["id"]
    missing = await client.get(f"{API}/pos-os@9.9.9", headers=viewer)
    assert missing.status == 404
    async with sqlite_engine.connect() as conn:
        audit = await list_audit(conn)
    assert [(e.action, e.target) for e in audit][:1] == [
        ("firmware.upload", "artifact:pos-os@5.3.0")
    ]


async def test_a_second_upload_of_the_same_image_is_a_no_op(
    client: Client, sqlite_engine: AsyncEngine, keys: dict[str, ReleaseKey]
) -> None:
    ops = await _auth(sqlite_engine, Role.OPS)
    first = await _upload(client, ops, keys["current"].sign(IMAGE))
    again = await _upload(client, ops, keys["next"].sign(IMAGE))
    assert (first[0], again[0]) == (201, 200)
    assert again[1]["created"] is False
    assert again[1]["artifact"]["id"] == first[1]["artifact"]["id"]


@pytest.mark.parametrize(
    "case", [("stranger", "signature_bad_signature"), ("revoked", "signature_revoked_key")]
)
async def test_an_untrusted_manifest_is_refused_before_the_image(
    client: Client,
    ops: dict[str, str],
    store: ArtifactStore,
    keys: dict[str, ReleaseKey],
    case: tuple[str, str],
) -> None:
    signer, code = case
    status, body = await _upload(client, ops, keys[signer].sign(IMAGE))
    assert (status, body["code"]) == (422, code)
    assert not store.has(SHA)


async def test_an_unknown_key_id_is_refused(
    client: Client, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    unknown = release_key(tmp_path / "other", "someone-else")
    status, body = await _upload(client, await _auth(sqlite_engine, Role.OPS), unknown.sign(IMAGE))
    assert (status, body["code"]) == (422, "signature_unknown_key")
    assert "not trusted" in body["detail"]


@pytest.mark.parametrize(
    "case",
    [
        (IMAGE[:-1], "size_mismatch"),
        (IMAGE[:-1] + b"\x00", "sha256_mismatch"),
        (IMAGE + b"\x00", "size_mismatch"),
    ],
    ids=["truncated", "corrupt", "too-long"],
)
async def test_an_image_that_does_not_match_its_manifest_leaves_nothing(
    client: Client,
    ops: dict[str, str],
    store: ArtifactStore,
    keys: dict[str, ReleaseKey],
    case: tuple[bytes, str],
) -> None:
    image, code = case
    status, body = await _upload(client, ops, keys["current"].sign(IMAGE), image)
    assert (status, body["code"]) == (422, code)
    assert list(store.root.iterdir()) == []
    listing = await (await client.get(API, headers=ops)).json()
    assert listing["items"] == []


async def test_a_version_that_names_another_image_is_a_conflict(
    client: Client, sqlite_engine: AsyncEngine, keys: dict[str, ReleaseKey]
) -> None:
    ops = await _auth(sqlite_engine, Role.OPS)
    assert (await _upload(client, ops, keys["current"].sign(IMAGE)))[0] == 201
    other = IMAGE[::-1]
    status, body = await _upload(client, ops, keys["current"].sign(other), other)
    assert (status, body["code"]) == (409, "conflict")
    assert "give the new image its own version" in body["detail"]


async def test_an_image_over_the_upload_limit_is_413(
    client: Client, sqlite_engine: AsyncEngine, keys: dict[str, ReleaseKey]
) -> None:
    big = image_bytes(9 * 1024 * 1024)
    status, body = await _upload(
        client, await _auth(sqlite_engine, Role.OPS), keys["current"].sign(big), big
    )
    assert (status, body["code"]) == (413, "payload_too_large")


async def test_support_may_not_upload_and_nobody_without_a_token(
    client: Client, sqlite_engine: AsyncEngine, keys: dict[str, ReleaseKey]
) -> None:
    support = await _auth(sqlite_engine, Role.SUPPORT)
    status, body = await _upload(client, support, keys["current"].sign(IMAGE))
    assert (status, body["code"]) == (403, "forbidden")
    assert (await _upload(client, {}, keys["current"].sign(IMAGE)))[0] == 401


async def test_a_manifest_that_is_not_one_is_422(
    client: Client, sqlite_engine: AsyncEngine
) -> None:
    form = aiohttp.FormData()
    form.add_field("manifest", '{"manifest": {}}', content_type="application/json")
    form.add_field("image", b"x", filename="image.bin")
    response = await client.post(API, data=form, headers=await _auth(sqlite_engine, Role.OPS))
    body = await response.json()
    assert (response.status, body["code"]) == (422, "invalid_manifest")
