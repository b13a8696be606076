"""Ed25519 signing and verification of firmware manifests; pure, shared with the agent.

The release key signs the manifest's canonical JSON: keys sorted, no whitespace, UTF-8.
Both sides build those bytes from the pydantic model with :func:`canonical_manifest_bytes`,
so a manifest re-serialised in another key order still verifies. Nothing here imports
anything central: the agent uses this module on the terminal.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from posfleet.contract import FirmwareManifest, SignedManifest
from posfleet.firmware.errors import SignatureError


def canonical_manifest_bytes(manifest: FirmwareManifest) -> bytes:
    """The exact bytes the release key signs: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def generate_private_key() -> Ed25519PrivateKey:
    """A new Ed25519 release key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM of a private key (unencrypted: keep the file 0600 and offline)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a public key, the form agents and the centre trust."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` to ``path`` with mode 0600; refuses to overwrite an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(key))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; a clear error if the file is anything else."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(pem: bytes, *, source: str = "public key") -> Ed25519PublicKey:
    """Parse a PEM Ed25519 public key; a clear error if it is anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{source}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{source}: not an Ed25519 key")
    return key


def sign_manifest(
    manifest: FirmwareManifest, key: Ed25519PrivateKey, key_id: str
) -> SignedManifest:
    """Sign ``manifest``'s canonical JSON; ``key_id`` tells verifiers which key to use."""
    signature = key.sign(canonical_manifest_bytes(manifest))
    return SignedManifest(
        manifest=manifest, key_id=key_id, signature=base64.b64encode(signature).decode("ascii")
    )


@dataclass(frozen=True)
class TrustedKeys:
    """The release keys a verifier trusts, by key id, and the ids it refuses.

    Two keys trusted at once is how a key is rotated; a revoked id is refused even if its
    public key is still listed somewhere.
    """

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()

    @classmethod
    def from_pem_files(cls, files: Mapping[str, Path], revoked: Iterable[str] = ()) -> TrustedKeys:
        """Keys from PEM files, ``{key_id: path}``."""
        keys = {
            key_id: load_public_key(path.read_bytes(), source=str(path))
            for key_id, path in files.items()
        }
        return cls(keys=keys, revoked=frozenset(revoked))

    def verify(self, signed: SignedManifest) -> FirmwareManifest:
        """The manifest if its signature verifies; :class:`SignatureError` saying why not."""
        if signed.key_id in self.revoked:
            raise SignatureError(f"key id {signed.key_id!r} is revoked", reason="revoked_key")
        key = self.keys.get(signed.key_id)
        if key is None:
            raise SignatureError(f"key id {signed.key_id!r} is not trusted", reason="unknown_key")
        try:
            key.verify(
                base64.b64decode(signed.signature), canonical_manifest_bytes(signed.manifest)
            )
        except InvalidSignature as exc:
            raise SignatureError(
                f"manifest signature does not verify with key {signed.key_id!r}",
                reason="bad_signature",
            ) from exc
        return signed.manifest
