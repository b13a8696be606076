"""Signed artifacts and registered terminals in a real store, for the firmware action tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import FirmwareManifest, Inventory, SignedManifest, State
from posfleet.firmware.artifacts import ArtifactRecord, get_artifact
from posfleet.firmware.signing import generate_private_key, sign_manifest
from posfleet.store import apply_inventory, apply_state
from posfleet.store.schema import firmware_artifacts

T0 = datetime(2026, 12, 2, 21, 0, tzinfo=UTC)
RELEASE_KEY = generate_private_key()


def signed_manifest(
    version: str = "5.3.0",
    *,
    models: tuple[str, ...] = ("V400m",),
    min_version: str | None = None,
    allow_downgrade: bool = False,
    image: bytes | None = None,
) -> SignedManifest:
    """A manifest signed by the test release key (the image bytes need not exist)."""
    body = image if image is not None else f"image {version}".encode()
    manifest = FirmwareManifest(
        name="pos-os",
        version=version,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        models=list(models),
        min_version=min_version,
        allow_downgrade=allow_downgrade,
    )
    return sign_manifest(manifest, RELEASE_KEY, "release-test")


async def add_artifact(engine: AsyncEngine, signed: SignedManifest) -> ArtifactRecord:
    """Record ``signed`` as an artifact row (the blob store is not involved here)."""
    m = signed.manifest
    async with engine.begin() as conn:
        result = await conn.execute(
            firmware_artifacts.insert()
            .values(
                name=m.name,
                version=m.version,
                sha256=m.sha256,
                size=m.size,
                models=list(m.models),
                min_version=m.min_version,
                allow_downgrade=m.allow_downgrade,
                release_notes=m.release_notes,
                signed_manifest=signed.model_dump(mode="json"),
                key_id=signed.key_id,
                uploaded_by="user:olga",
                uploaded_at=T0,
            )
            .returning(firmware_artifacts.c.id)
        )
        record = await get_artifact(conn, result.scalar_one())
    assert record is not None
    return record


async def add_terminal(
    engine: AsyncEngine,
    terminal_id: str,
    *,
    model: str = "V400m",
    firmware: str = "5.2.1",
    online: bool = True,
    timezone: str = "Europe/Berlin",
) -> None:
    """Register a terminal with its inventory, as its birth and inventory messages would."""
    async with engine.begin() as conn:
        await apply_state(
            conn,
            terminal_id,
            State(online=online, agent_version="1.4.0", boot_id="boot-1", ts=T0),
            now=T0,
        )
        await apply_inventory(
            conn,
            terminal_id,
            Inventory(
                model=model,
                serial=f"SN-{terminal_id}",
                hw_revision="B",
                firmware_version=firmware,
                agent_version="1.4.0",
                timezone=timezone,
                ts=T0,
            ),
            now=T0,
        )
