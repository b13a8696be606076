"""What ``posfleet firmware keygen|sign|upload|list|show`` do, apart from the argument parsing.

Keys and signatures are made offline, on the release machine; the private key never
reaches the central service. An upload goes either straight into this installation's
store (``var_dir`` and the database, like the other admin commands) or, with a server
URL, through ``POST /api/v1/firmware/artifacts`` with an ops API token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydantic
from cryptography.hazmat.primitives import serialization

from posfleet.central.errors import CentralError
from posfleet.central.settings import CentralSettings
from posfleet.contract import FirmwareManifest, SignedManifest
from posfleet.firmware.artifact_store import ArtifactStore, hash_file
from posfleet.firmware.artifacts import ArtifactRecord, Artifacts, UploadResult, require_semver
from posfleet.firmware.errors import ArtifactError
from posfleet.firmware.signing import (
    TrustedKeys,
    generate_private_key,
    load_private_key,
    public_key_pem,
    sign_manifest,
    write_private_key,
)

Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""

UPLOAD_CHUNK = 1024 * 1024


class FirmwareAdminError(CentralError):
    """A firmware command that cannot be done; the message says what to change."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A release key pair just written."""

    key_id: str
    private_path: Path
    public_path: Path
    public_base64: str


def default_key_id(public_raw: bytes) -> str:
    """``release-<12 hex digits of the public key's SHA-256>``: unique, and says which key."""
    return f"release-{hashlib.sha256(public_raw).hexdigest()[:12]}"


def keygen(out: Path, key_id: str | None = None) -> NewKey:
    """Write a new Ed25519 release key to ``out`` (0600) and its public key beside it."""
    public_path = (
        out.with_suffix(".pub") if out.suffix != ".pub" else out.with_name(out.name + ".pub")
    )
    for path in (out, public_path):
        if path.exists():
            raise FirmwareAdminError(f"{path} already exists; a release key is never overwritten")
    key = generate_private_key()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    chosen = key_id or default_key_id(raw)
    if not 1 <= len(chosen) <= 64:
        raise FirmwareAdminError("a key id is 1 to 64 characters")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_private_key(out, key)
    public_path.write_bytes(public_key_pem(key.public_key()))
    return NewKey(chosen, out, public_path, base64.b64encode(raw).decode("ascii"))


def _manifest(**fields: object) -> FirmwareManifest:
    try:
        return FirmwareManifest.model_validate(fields)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}" for e in exc.errors()
        )
        raise FirmwareAdminError(f"the manifest is not valid: {problems}") from None


def sign_image(
    image: Path,
    *,
    key_file: Path,
    key_id: str,
    name: str,
    version: str,
    models: Sequence[str],
    min_version: str | None = None,
    allow_downgrade: bool = False,
    release_notes: str = "",
    progress: Progress | None = None,
) -> SignedManifest:
    """A signed manifest for ``image``; size and SHA-256 are read from the file in chunks."""
    if not image.is_file():
        raise FirmwareAdminError(f"{image} is not a file")
    try:
        require_semver(version)
    except ArtifactError as exc:
        raise FirmwareAdminError(str(exc)) from None
    key = load_private_key(key_file)
    sha256, size = hash_file(image, progress)
    manifest = _manifest(
        name=name,
        version=version,
        sha256=sha256,
        size=size,
        models=[m.strip() for m in models if m.strip()],
        min_version=min_version,
        allow_downgrade=allow_downgrade,
        release_notes=release_notes,
    )
    if not manifest.models:
        raise FirmwareAdminError("name at least one terminal model (--models V400m,P630)")
    return sign_manifest(manifest, key, key_id)


def load_signed_manifest(path: Path) -> SignedManifest:
    """Read a ``SignedManifest`` JSON file; a clear error naming the bad field."""
    try:
        return SignedManifest.model_validate_json(path.read_bytes())
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise FirmwareAdminError(
            f"{path} is not a signed manifest ({where}: {first['msg']})"
        ) from None


def check_image_size(image: Path, signed: SignedManifest) -> None:
    """Refuse, before sending a byte, an image whose size is not the manifest's."""
    if not image.is_file():
        raise FirmwareAdminError(f"{image} is not a file")
    actual = image.stat().st_size
    if actual != signed.manifest.size:
        raise FirmwareAdminError(
            f"{image} has {actual} bytes but its manifest declares {signed.manifest.size}: "
            "is this the image that was signed?"
        )


@asynccontextmanager
async def local_artifacts(
    settings: CentralSettings, trusted: TrustedKeys | None = None
) -> AsyncIterator[Artifacts]:
    """:class:`Artifacts` over this installation's database (migrated) and blob folder."""
    from posfleet.store.engine import create_engine
    from posfleet.store.migrate import upgrade_engine

    # A firmware command brings the schema up to date as it goes; which dialect Alembic
    # picked is not news for the person listing artifacts.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade_engine(engine)
        yield Artifacts(engine, ArtifactStore(settings.artifacts_dir), trusted or TrustedKeys())
    finally:
        await engine.dispose()


async def upload_local(
    settings: CentralSettings,
    image: Path,
    signed: SignedManifest,
    *,
    actor: str,
    reason: str = "",
    progress: Progress | None = None,
) -> UploadResult:
    """Verify, copy and record an artifact in this installation (audited as ``actor``)."""
    check_image_size(image, signed)
    async with local_artifacts(settings, settings.firmware.trusted()) as artifacts:
        existing = await artifacts.check_upload(signed)
        manifest = signed.manifest
        if existing is not None:
            # The manifest is known; the file given with it must still be that image.
            digest, _ = await asyncio.to_thread(hash_file, image)
            if digest != manifest.sha256:
                raise ArtifactError(
                    f"{image} is not the image of this manifest: its SHA-256 is {digest}, "
                    f"the manifest (already stored as artifact #{existing.id}) says "
                    f"{manifest.sha256}",
                    reason="sha256_mismatch",
                )
            return UploadResult(existing, created=False)
        await asyncio.to_thread(
            artifacts.store.put_file,
            image,
            sha256=manifest.sha256,
            size=manifest.size,
            progress=progress,
        )
        return await artifacts.record(signed, uploaded_by=actor, reason=reason)


async def _file_chunks(image: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    with image.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, UPLOAD_CHUNK):
            yield chunk
            if progress is not None:
                progress(len(chunk))


async def upload_remote(
    server: str,
    token: str,
    image: Path,
    signed: SignedManifest,
    *,
    reason: str = "",
    progress: Progress | None = None,
) -> tuple[ArtifactRecord, bool]:
    """Upload through a central service's API; the artifact and whether it is new."""
    import aiohttp

    check_image_size(image, signed)
    form = aiohttp.FormData()
    form.add_field("manifest", signed.model_dump_json(), content_type="application/json")
    form.add_field(
        "image",
        _file_chunks(image, progress),
        filename=image.name,
        content_type="application/octet-stream",
    )
    url = f"{server.rstrip('/')}/api/v1/firmware/artifacts"
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, data=form, headers=headers, params={"reason": reason}) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise FirmwareAdminError(f"cannot upload to {url}: {exc}") from exc
    if response.status not in (200, 201):
        detail = body.get("detail") if isinstance(body, dict) else None
        raise FirmwareAdminError(f"the server refused the upload ({response.status}): {detail}")
    return ArtifactRecord.model_validate(body["artifact"]), bool(body["created"])


async def list_local(
    settings: CentralSettings, name: str | None, limit: int
) -> list[ArtifactRecord]:
    """The newest ``limit`` artifacts of this installation."""
    async with local_artifacts(settings) as artifacts:
        return list(await artifacts.list(name=name, limit=limit))


async def find_local(settings: CentralSettings, ref: str) -> ArtifactRecord:
    """One artifact by id, ``name@version`` or SHA-256 prefix."""
    async with local_artifacts(settings) as artifacts:
        try:
            return await artifacts.find(ref)
        except ArtifactError as exc:
            raise FirmwareAdminError(str(exc)) from None


@contextmanager
def byte_progress(description: str, total: int, *, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr for ``total`` bytes; yields the advance callback."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda _n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def manifest_json(signed: SignedManifest) -> str:
    """The signed manifest as a file is written: indented JSON, newline at the end."""
    return json.dumps(signed.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
