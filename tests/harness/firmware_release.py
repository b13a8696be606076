"""Release keys and signed firmware images for tests, made the way ops makes them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from posfleet.contract import FirmwareManifest, SignedManifest
from posfleet.firmware.signing import (
    TrustedKeys,
    generate_private_key,
    public_key_pem,
    sign_manifest,
)


@dataclass(frozen=True)
class ReleaseKey:
    """One Ed25519 release key with its id and its public key file."""

    key_id: str
    private: Ed25519PrivateKey
    public_path: Path

    def sign(
        self,
        image: bytes,
        *,
        name: str = "pos-os",
        version: str = "5.3.0",
        models: tuple[str, ...] = ("V400m",),
        min_version: str | None = None,
        allow_downgrade: bool = False,
        size: int | None = None,
        sha256: str | None = None,
    ) -> SignedManifest:
        """A manifest for ``image`` signed with this key (``size``/``sha256`` may lie)."""
        manifest = FirmwareManifest(
            name=name,
            version=version,
            sha256=sha256 or hashlib.sha256(image).hexdigest(),
            size=size if size is not None else len(image),
            models=list(models),
            min_version=min_version,
            allow_downgrade=allow_downgrade,
        )
        return sign_manifest(manifest, self.private, self.key_id)


def release_key(folder: Path, key_id: str = "release-test") -> ReleaseKey:
    """A new release key whose public PEM is written to ``folder/<key_id>.pub``."""
    private = generate_private_key()
    folder.mkdir(parents=True, exist_ok=True)
    public_path = folder / f"{key_id}.pub"
    public_path.write_bytes(public_key_pem(private.public_key()))
    return ReleaseKey(key_id, private, public_path)


def trusting(*keys: ReleaseKey, revoked: tuple[str, ...] = ()) -> TrustedKeys:
    """A verifier that trusts ``keys`` and refuses the ``revoked`` ids."""
    return TrustedKeys.from_pem_files({k.key_id: k.public_path for k in keys}, revoked)


def image_bytes(size: int, seed: int = 7) -> bytes:
    """A deterministic pseudo-image of ``size`` bytes (not compressible, not all zeros)."""
    out = bytearray()
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])
