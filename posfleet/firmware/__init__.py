"""posfleet firmware: signed manifests, artifacts, actions and the download service.

Only the pure modules (:mod:`posfleet.firmware.signing`, :mod:`posfleet.firmware.errors`)
are imported here, so the agent can use them without anything central installed.
"""

from posfleet.firmware.errors import FirmwareError, SignatureError
from posfleet.firmware.signing import (
    TrustedKeys,
    canonical_manifest_bytes,
    sign_manifest,
)

__all__ = [
    "FirmwareError",
    "SignatureError",
    "TrustedKeys",
    "canonical_manifest_bytes",
    "sign_manifest",
]
