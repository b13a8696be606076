"""The download route through a real aiohttp server: tokens, Range, If-Range, caps, cuts."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.firmware_download import FIRMWARE_KEY, FirmwareDelivery
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.artifacts import Artifacts
from posfleet.firmware.download_tokens import TERMINAL_HEADER, DownloadTokens
from posfleet.store.accounts import Role, create_api_token
from tests.harness import async_wait_for
from tests.harness.firmware_release import image_bytes, release_key, trusting

IMAGE = image_bytes(1024 * 1024 + 123)
SHA = hashlib.sha256(IMAGE).hexdigest()
URL = f"/firmware/download/{SHA}"
TOKENS = DownloadTokens(bytes(range(32, 64)))

Client = TestClient[web.Request, web.Application]


async def _insert_action(engine: AsyncEngine, artifact_id: int, terminal: str, state: str) -> str:
    now = utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.text(
                'INSERT INTO firmware_actions (artifact_id, terminal_id, state, "window", '
                "created_by, created_at, updated_at, deadline) VALUES (:a, :t, :s, '{}', "
                "'test', :now, :now, :deadline) RETURNING id"
            ),
            {
                "a": artifact_id,
                "t": terminal,
                "s": state,
                "now": now.replace(tzinfo=None),
                "deadline": (now + timedelta(days=1)).replace(tzinfo=None),
            },
        )
        return str(result.scalar_one())


async def _image_chunks() -> AsyncIterator[bytes]:
    yield IMAGE


@pytest.fixture
async def setup(sqlite_engine: AsyncEngine, tmp_path: Path) -> dict[str, Any]:
    key = release_key(tmp_path / "keys")
    store = ArtifactStore(tmp_path / "artifacts")
    artifacts = Artifacts(sqlite_engine, store, trusting(key))
    uploaded = await artifacts.upload(key.sign(IMAGE), _image_chunks(), uploaded_by="test")
    artifact_id = uploaded.artifact.id
    return {
        "engine": sqlite_engine,
        "store": store,
        "trusted": trusting(key),
        "open_action": await _insert_action(sqlite_engine, artifact_id, "T-1", "downloading"),
        "final_action": await _insert_action(sqlite_engine, artifact_id, "T-1", "succeeded"),
    }


def _delivery(
    setup: dict[str, Any], *, per_download_bps: int | None = None, total_bps: int | None = None
) -> FirmwareDelivery:
    return FirmwareDelivery(
        store=setup["store"],
        trusted=setup["trusted"],
        tokens=TOKENS,
        per_download_bps=per_download_bps,
        total_bps=total_bps,
    )


@pytest.fixture
async def client(setup: dict[str, Any]) -> AsyncIterator[Client]:
    app = create_app(setup["engine"], session_secret=bytes(32), firmware=_delivery(setup))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _auth(setup: dict[str, Any], terminal: str = "T-1", *, ttl_s: int = 600) -> dict[str, str]:
    token = TOKENS.issue("T-1", setup["open_action"], SHA, utcnow() + timedelta(seconds=ttl_s))
    return {"Authorization": f"Bearer {token}", TERMINAL_HEADER: terminal}


async def test_the_whole_image_downloads_with_its_validators(
    client: Client, setup: dict[str, Any]
) -> None:
    response = await client.get(URL, headers=_auth(setup))
    assert response.status == 200
    assert await response.read() == IMAGE
    assert response.headers["ETag"] == f'"{SHA}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(IMAGE))
    assert response.content_type == "application/octet-stream"


async def test_a_range_resumes_from_an_offset(client: Client, setup: dict[str, Any]) -> None:
    response = await client.get(URL, headers={**_auth(setup), "Range": "bytes=1000000-"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 1000000-{len(IMAGE) - 1}/{len(IMAGE)}"
    assert await response.read() == IMAGE[1000000:]


@pytest.mark.parametrize(
    ("header", "expected"),
    [("bytes=0-99", IMAGE[:100]), ("bytes=-10", IMAGE[-10:]), ("bytes=5-5", IMAGE[5:6])],
)
async def test_bounded_and_suffix_ranges(
    client: Client, setup: dict[str, Any], header: str, expected: bytes
) -> None:
    response = await client.get(URL, headers={**_auth(setup), "Range": header})
    assert response.status == 206
    assert await response.read() == expected


async def test_a_range_beyond_the_end_is_416(client: Client, setup: dict[str, Any]) -> None:
    response = await client.get(URL, headers={**_auth(setup), "Range": f"bytes={len(IMAGE)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(IMAGE)}"


async def test_if_range_with_the_sha256_resumes_and_with_anything_else_restarts(
    client: Client, setup: dict[str, Any]
) -> None:
    same = {**_auth(setup), "Range": "bytes=10-", "If-Range": f'"{SHA}"'}
    response = await client.get(URL, headers=same)
    assert (response.status, await response.read()) == (206, IMAGE[10:])
    changed = {**_auth(setup), "Range": "bytes=10-", "If-Range": '"' + "0" * 64 + '"'}
    response = await client.get(URL, headers=changed)
    assert (response.status, await response.read()) == (200, IMAGE)


async def test_the_token_may_come_in_the_query(client: Client, setup: dict[str, Any]) -> None:
    token = _auth(setup)["Authorization"].removeprefix("Bearer ")
    response = await client.get(
        URL, params={"token": token}, headers={TERMINAL_HEADER: "T-1", "Range": "bytes=0-3"}
    )
    assert (response.status, await response.read()) == (206, IMAGE[:4])


async def test_head_answers_the_size_without_a_body(client: Client, setup: dict[str, Any]) -> None:
    response = await client.head(URL, headers=_auth(setup))
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(IMAGE))


async def _refusal(response: Any) -> str:
    assert response.status == 403
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 403 and body["detail"]
    return str(body["reason"])


async def test_expired_other_terminal_and_forged_tokens_are_403(
    client: Client, setup: dict[str, Any]
) -> None:
    assert await _refusal(await client.get(URL, headers=_auth(setup, ttl_s=-5))) == "expired"
    assert (
        await _refusal(await client.get(URL, headers=_auth(setup, terminal="T-2")))
        == "other-terminal"
    )
    forged = _auth(setup)
    forged["Authorization"] = forged["Authorization"][:-4] + "AAAA"
    assert await _refusal(await client.get(URL, headers=forged)) == "forged"
    assert await _refusal(await client.get(URL, headers={TERMINAL_HEADER: "T-1"})) == (
        "missing-token"
    )
    stats = client.app[FIRMWARE_KEY].stats
    assert stats.refused["expired"] == stats.refused["forged"] == 1
    assert stats.bytes_sent == 0
    async with setup["engine"].begin() as conn:
        ops = await create_api_token(conn, "prometheus", Role.OPS)
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {ops}"})
    text = await metrics.text()
    assert 'posfleet_firmware_downloads_refused_total{reason="other-terminal"} 1' in text
    assert "posfleet_firmware_download_bytes_total 0" in text


async def test_a_token_of_a_finished_action_is_refused(
    client: Client, setup: dict[str, Any]
) -> None:
    token = TOKENS.issue("T-1", setup["final_action"], SHA, utcnow() + timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {token}", TERMINAL_HEADER: "T-1"}
    assert await _refusal(await client.get(URL, headers=headers)) == "replayed-after-final"
    token = TOKENS.issue("T-1", "999999", SHA, utcnow() + timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {token}", TERMINAL_HEADER: "T-1"}
    assert await _refusal(await client.get(URL, headers=headers)) == "replayed-after-final"


async def test_a_download_cut_mid_body_resumes_with_a_range(
    client: Client, setup: dict[str, Any]
) -> None:
    # Larger than what loopback socket buffers hold, so the server is still sending.
    big = image_bytes(48 * 1024 * 1024, seed=11)
    big_sha = hashlib.sha256(big).hexdigest()
    await setup["store"].put_stream(_chunks_of(big), sha256=big_sha, size=len(big))
    token = TOKENS.issue("T-1", setup["open_action"], big_sha, utcnow() + timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {token}", TERMINAL_HEADER: "T-1"}
    url = f"/firmware/download/{big_sha}"
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {url} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    received = await reader.readexactly(300_000)
    writer.transport.abort()  # the cut: no FIN handshake, the socket is just gone
    stats = client.app[FIRMWARE_KEY].stats
    await async_wait_for(lambda: stats.interrupted == 1, description="the server saw the cut")
    assert stats.active == 0
    response = await client.get(url, headers={**headers, "Range": f"bytes={len(received)}-"})
    assert response.status == 206
    assert hashlib.sha256(received + await response.read()).hexdigest() == big_sha


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1024 * 1024):
        yield data[start : start + 1024 * 1024]


async def test_bandwidth_caps_hold_per_download_and_in_total(setup: dict[str, Any]) -> None:
    rate = 512 * 1024
    app = create_app(
        setup["engine"], session_secret=bytes(32), firmware=_delivery(setup, per_download_bps=rate)
    )
    async with TestClient(TestServer(app)) as capped:
        started = time.monotonic()
        response = await capped.get(URL, headers=_auth(setup))
        assert await response.read() == IMAGE
        elapsed = time.monotonic() - started
    burst = rate / 4
    assert elapsed >= (len(IMAGE) - burst) / rate * 0.95
    app = create_app(
        setup["engine"], session_secret=bytes(32), firmware=_delivery(setup, total_bps=2 * rate)
    )
    async with TestClient(TestServer(app)) as shared:

        async def one() -> bytes:
            response = await shared.get(URL, headers=_auth(setup))
            return await response.read()

        started = time.monotonic()
        bodies = await asyncio.gather(one(), one(), one())
        elapsed = time.monotonic() - started
    assert list(bodies) == [IMAGE] * 3
    assert elapsed >= (3 * len(IMAGE) - 2 * burst) / (2 * rate) * 0.95
