"""Firmware artifacts: a verified, signed image in the blob store plus its row in the store.

:class:`Artifacts` is the one way in: it checks the manifest's signature against the
configured release keys *before* taking a byte, streams the image into the
:class:`~posfleet.firmware.artifact_store.ArtifactStore` (which checks size and SHA-256),
and only then records the row and the audit entry in one transaction. Uploading the
same image again is a no-op that answers with the artifact already there.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import SignedManifest, utcnow
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError, SignatureError
from posfleet.firmware.signing import TrustedKeys
from posfleet.store.accounts import record_audit
from posfleet.store.schema import firmware_artifacts

_HEX = re.compile(r"^[0-9a-f]+$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
MIN_SHA_PREFIX = 6
"""Shortest SHA-256 prefix accepted to name an artifact."""


def require_semver(version: str) -> str:
    """``version`` if it is a semantic version (``5.3.0``, ``5.3.0-rc.1+b7``); else why not."""
    if not _SEMVER.match(version):
        raise ArtifactError(
            f"version {version!r} is not a semantic version such as 5.3.0 or 5.3.0-rc.1",
            reason="bad_version",
        )
    return version


class ArtifactRecord(pydantic.BaseModel):
    """One stored artifact as the API and the CLI show it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    name: str
    version: str
    sha256: str
    size: int
    models: list[str]
    min_version: str | None
    allow_downgrade: bool
    release_notes: str
    key_id: str
    uploaded_by: str
    uploaded_at: datetime
    signed_manifest: SignedManifest

    @property
    def label(self) -> str:
        """``name@version``, how people name an artifact."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The artifact an upload ended in; ``created`` is False for a duplicate."""

    artifact: ArtifactRecord
    created: bool


_COLUMNS = tuple(firmware_artifacts.c)


def _record(row: sa.Row[Any]) -> ArtifactRecord:
    values = dict(row._mapping)
    values["signed_manifest"] = SignedManifest.model_validate(values["signed_manifest"])
    values["models"] = list(values["models"] or [])
    return ArtifactRecord.model_validate(values)


async def get_artifact(conn: AsyncConnection, artifact_id: int) -> ArtifactRecord | None:
    """The artifact with this id, if any."""
    row = (
        await conn.execute(sa.select(*_COLUMNS).where(firmware_artifacts.c.id == artifact_id))
    ).first()
    return _record(row) if row is not None else None


async def get_artifact_by_sha256(conn: AsyncConnection, sha256: str) -> ArtifactRecord | None:
    """The artifact whose image has this SHA-256, if any."""
    row = (
        await conn.execute(sa.select(*_COLUMNS).where(firmware_artifacts.c.sha256 == sha256))
    ).first()
    return _record(row) if row is not None else None


async def list_artifacts(
    conn: AsyncConnection,
    *,
    name: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[ArtifactRecord]:
    """Artifacts, newest upload first; ``before_id`` pages on."""
    a = firmware_artifacts.c
    query = sa.select(*_COLUMNS).order_by(a.id.desc()).limit(max(1, limit))
    if name is not None:
        query = query.where(a.name == name)
    if before_id is not None:
        query = query.where(a.id < before_id)
    return [_record(row) for row in await conn.execute(query)]


async def find_artifact(conn: AsyncConnection, ref: str) -> ArtifactRecord:
    """The artifact named by ``ref``: an id, ``name@version`` or a SHA-256 prefix.

    Raises :class:`ArtifactNotFoundError`, or :class:`ArtifactError` (``ambiguous``) for
    a prefix that more than one image shares.
    """
    ref = ref.strip()
    a = firmware_artifacts.c
    if "@" in ref:
        name, _, version = ref.partition("@")
        row = (
            await conn.execute(sa.select(*_COLUMNS).where(a.name == name, a.version == version))
        ).first()
        if row is None:
            raise ArtifactNotFoundError(f"no artifact {ref}")
        return _record(row)
    if ref.isdigit() and len(ref) <= 18:
        found = await get_artifact(conn, int(ref))
        if found is not None or len(ref) < MIN_SHA_PREFIX:
            if found is None:
                raise ArtifactNotFoundError(f"no artifact #{ref}")
            return found
    prefix = ref.lower()
    if len(prefix) < MIN_SHA_PREFIX or len(prefix) > 64 or not _HEX.match(prefix):
        raise ArtifactNotFoundError(
            f"no artifact {ref!r}: name one by id, name@version or at least "
            f"{MIN_SHA_PREFIX} hex digits of its SHA-256"
        )
    rows = (
        await conn.execute(sa.select(*_COLUMNS).where(a.sha256.startswith(prefix)).limit(2))
    ).all()
    if not rows:
        raise ArtifactNotFoundError(f"no artifact whose SHA-256 starts with {prefix}")
    if len(rows) > 1:
        raise ArtifactError(
            f"more than one artifact's SHA-256 starts with {prefix}; give more digits",
            reason="ambiguous",
        )
    return _record(rows[0])


class Artifacts:
    """Uploads and lookups over one database and one blob store."""

    def __init__(self, engine: AsyncEngine, store: ArtifactStore, trusted: TrustedKeys) -> None:
        self.engine = engine
        self.store = store
        self.trusted = trusted

    async def check_upload(self, signed: SignedManifest) -> ArtifactRecord | None:
        """Refuse a manifest before any byte is taken; the artifact if it is already stored.

        Raises :class:`~posfleet.firmware.errors.SignatureError` for a manifest no
        configured release key vouches for, and :class:`ArtifactError` (``conflict``)
        when its name and version already belong to another image.
        """
        if not self.trusted.keys:
            raise SignatureError(
                "no release key is configured: set firmware.trusted_keys to the .pub file "
                "from posfleet firmware keygen",
                reason="no_keys",
            )
        manifest = self.trusted.verify(signed)
        require_semver(manifest.version)
        a = firmware_artifacts.c
        async with self.engine.connect() as conn:
            same = await get_artifact_by_sha256(conn, manifest.sha256)
            if same is not None and self.store.has(manifest.sha256):
                return same
            clash = (
                await conn.execute(
                    sa.select(a.sha256).where(
                        a.name == manifest.name,
                        a.version == manifest.version,
                        a.sha256 != manifest.sha256,
                    )
                )
            ).first()
        if clash is not None:
            raise ArtifactError(
                f"{manifest.name}@{manifest.version} already exists with another image "
                f"(SHA-256 {clash.sha256}); give the new image its own version",
                reason="conflict",
            )
        return None

    async def upload(
        self,
        signed: SignedManifest,
        chunks: AsyncIterable[bytes],
        *,
        uploaded_by: str,
        reason: str = "",
    ) -> UploadResult:
        """Verify ``signed``, store the image from ``chunks`` and record the artifact.

        For a duplicate the chunks are not read. Nothing is recorded unless the whole
        image arrived with the manifest's size and SHA-256.
        """
        existing = await self.check_upload(signed)
        if existing is not None:
            return UploadResult(existing, created=False)
        manifest = signed.manifest
        await self.store.put_stream(chunks, sha256=manifest.sha256, size=manifest.size)
        return await self.record(signed, uploaded_by=uploaded_by, reason=reason)

    async def record(
        self, signed: SignedManifest, *, uploaded_by: str, reason: str = ""
    ) -> UploadResult:
        """Record the artifact of a verified manifest whose blob is stored (audited)."""
        manifest = signed.manifest
        self.store.blob(manifest.sha256)
        values = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.sha256,
            "size": manifest.size,
            "models": list(manifest.models),
            "min_version": manifest.min_version,
            "allow_downgrade": manifest.allow_downgrade,
            "release_notes": manifest.release_notes,
            "signed_manifest": signed.model_dump(mode="json"),
            "key_id": signed.key_id,
            "uploaded_by": uploaded_by,
            "uploaded_at": utcnow(),
        }
        try:
            async with self.engine.begin() as conn:
                new_id = (
                    await conn.execute(
                        sa.insert(firmware_artifacts)
                        .values(**values)
                        .returning(firmware_artifacts.c.id)
                    )
                ).scalar_one()
                await record_audit(
                    conn,
                    uploaded_by,
                    "firmware.upload",
                    f"artifact:{manifest.name}@{manifest.version}",
                    {"sha256": manifest.sha256, "size": manifest.size, "key_id": signed.key_id},
                    reason,
                )
                created = await get_artifact(conn, new_id)
        except IntegrityError:
            # Another upload of the same image won the race: that one is the artifact.
            async with self.engine.connect() as conn:
                winner = await get_artifact_by_sha256(conn, manifest.sha256)
            if winner is None:
                raise
            return UploadResult(winner, created=False)
        assert created is not None
        return UploadResult(created, created=True)

    async def find(self, ref: str) -> ArtifactRecord:
        """:func:`find_artifact` on a connection of its own."""
        async with self.engine.connect() as conn:
            return await find_artifact(conn, ref)

    async def list(
        self, *, name: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> Sequence[ArtifactRecord]:
        """:func:`list_artifacts` on a connection of its own."""
        async with self.engine.connect() as conn:
            return await list_artifacts(conn, name=name, limit=limit, before_id=before_id)
