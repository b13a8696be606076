"""Firmware offers (centre -> agent) and update status (agent -> centre)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from posfleet.contract.base import AwareDatetime, StrictModel
from posfleet.contract.state import Version
from posfleet.contract.vocabulary import UpdateState

__all__ = [
    "HHMM",
    "FirmwareManifest",
    "FirmwareOffer",
    "MaintenanceWindow",
    "Sha256",
    "SignedManifest",
    "UpdateState",
    "UpdateStatus",
]

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class FirmwareManifest(StrictModel):
    """What the ops release key signs: the artifact's identity and install rules."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    version: Version
    sha256: Sha256
    size: Annotated[int, Field(gt=0)]
    models: list[Annotated[str, Field(max_length=64)]] = Field(
        description="terminal models this image is built for"
    )
    allow_downgrade: bool = False
    min_version: Version | None = Field(
        default=None, description="oldest firmware version this image may update from"
    )
    release_notes: Annotated[str, Field(max_length=4000)] = ""


class SignedManifest(StrictModel):
    """A manifest and its Ed25519 signature over the manifest's canonical JSON."""

    manifest: FirmwareManifest
    key_id: Annotated[str, Field(min_length=1, max_length=64)]
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$")] = Field(
        description="base64 Ed25519 signature (64 bytes)"
    )


class MaintenanceWindow(StrictModel):
    """Local-time window in the terminal's own time zone; may wrap past midnight."""

    start: HHMM = "22:00"
    end: HHMM = "06:00"
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4, 5, 6], description="0 = Monday"
    )


class FirmwareOffer(StrictModel):
    """Published on ``fw/offer``: install this image inside the window."""

    action_id: Annotated[str, Field(min_length=1, max_length=64)]
    signed_manifest: SignedManifest
    url: Annotated[str, Field(max_length=2048)]
    token: Annotated[str, Field(min_length=16, max_length=256)]
    window: MaintenanceWindow
    not_before: AwareDatetime | None = None
    expires_at: AwareDatetime


class UpdateStatus(StrictModel):
    """Published on ``fw/status`` as an update progresses."""

    action_id: Annotated[str, Field(min_length=1, max_length=64)]
    state: UpdateState
    progress: Annotated[float, Field(ge=0, le=1)] = 0.0
    detail: Annotated[str, Field(max_length=1024)] = ""
    ts: AwareDatetime
