"""The demo's firmware update: a release key, two signed images, and the push on cue.

At start the demo makes a release key in ``var_dir/firmware`` (or takes the one an earlier
run made there), builds two images the simulated terminals boot
(:func:`~posfleet.simulator.firmware_images.make_image`), signs them and uploads them as
``posfleet firmware sign`` and ``posfleet firmware upload`` do: pos-os 5.3.0, and a
release candidate that boot-loops. The central service and the simulated agents trust
the key's public half; the private key never leaves that folder (mode 0600).

The demo rolls both out as rollouts (:mod:`posfleet.central.demo_rollouts`): the release
in waves over one site, the candidate as a pilot on another, whose canary rolls back and
pauses it. Here also: what an earlier run left behind is cleared, and the maintenance
window the rollouts use opens now in the sites' own time zone (:func:`window_open_now`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization

from posfleet.central.firmware_admin import (
    FirmwareAdminError,
    default_key_id,
    keygen,
    manifest_json,
    sign_image,
    upload_local,
)
from posfleet.central.settings import CentralSettings
from posfleet.contract import MaintenanceWindow, SignedManifest, utcnow
from posfleet.firmware.action_records import open_actions_of
from posfleet.firmware.errors import FirmwareError
from posfleet.firmware.offers import FirmwareOffers
from posfleet.firmware.signing import load_private_key, public_key_pem
from posfleet.simulator.firmware_images import DEFAULT_MODELS, make_image

log = logging.getLogger(__name__)

IMAGE_NAME = "pos-os"
RELEASE_VERSION = "5.3.0"
PILOT_VERSION = "5.4.0-rc.1"
"""The release candidate piloted at one site: it boot-loops, the canary rolls back."""
IMAGE_SIZE = 384 * 1024
DEMO_ACTOR = "demo"
"""Who the audit log says uploaded the demo's firmware and cleared an earlier run's work."""
WINDOW_LENGTH = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class ReleaseKey:
    """The demo's release key files and the key id they are trusted under."""

    key_id: str
    private_path: Path
    public_path: Path


@dataclass(frozen=True, slots=True)
class DemoImage:
    """One signed image of the demo, as files beside the key."""

    version: str
    path: Path
    manifest_path: Path
    signed: SignedManifest


def demo_release_key(folder: Path) -> ReleaseKey:
    """The release key in ``folder``: made now (private key 0600), or the earlier run's.

    Reusing it keeps the artifacts an earlier run uploaded verifiable with today's key.
    """
    private_path, public_path = folder / "release.key", folder / "release.pub"
    if not private_path.exists():
        public_path.unlink(missing_ok=True)  # a lone public key is of no use without its key
        made = keygen(private_path)
        return ReleaseKey(made.key_id, made.private_path, made.public_path)
    os.chmod(private_path, 0o600)
    key = load_private_key(private_path)
    public_path.write_bytes(public_key_pem(key.public_key()))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return ReleaseKey(default_key_id(raw), private_path, public_path)


def build_demo_images(folder: Path, key: ReleaseKey) -> list[DemoImage]:
    """The release and the boot-looping candidate, written and signed into ``folder``."""
    images = []
    for version, boot_loop, notes in (
        (RELEASE_VERSION, False, "Demo release: faster contactless reads, printer jam fix."),
        (PILOT_VERSION, True, "Release candidate for one pilot terminal."),
    ):
        path = folder / f"{IMAGE_NAME}-{version}.bin"
        image = make_image(version, IMAGE_SIZE, models=DEFAULT_MODELS, boot_loop=boot_loop)
        path.write_bytes(image)
        signed = sign_image(
            path,
            key_file=key.private_path,
            key_id=key.key_id,
            name=IMAGE_NAME,
            version=version,
            models=DEFAULT_MODELS,
            release_notes=notes,
        )
        manifest_path = folder / f"{IMAGE_NAME}-{version}.signed.json"
        manifest_path.write_text(manifest_json(signed), encoding="utf-8")
        images.append(DemoImage(version, path, manifest_path, signed))
    return images


async def upload_demo_images(settings: CentralSettings, images: Sequence[DemoImage]) -> int:
    """Upload the images as artifacts (an image stored before is kept); how many are new.

    A refusal is logged, not raised: the demo runs on without that image.
    """
    created = 0
    for image in images:
        try:
            result = await upload_local(
                settings, image.path, image.signed, actor=DEMO_ACTOR, reason="posfleet demo"
            )
        except (FirmwareAdminError, FirmwareError) as exc:
            log.warning(
                "the demo's firmware %s@%s was not uploaded: %s (remove the demo's var dir "
                "to start afresh)",
                IMAGE_NAME,
                image.version,
                exc,
            )
            continue
        created += result.created
    return created


def forget_earlier_updates(fleet_state: Path) -> None:
    """Drop the simulated agents' firmware state of an earlier run.

    The simulated terminals start afresh on every run; an agent that remembered an
    earlier run's action would think a stranger's update is under way.
    """
    for folder in fleet_state.glob("*/firmware"):
        shutil.rmtree(folder, ignore_errors=True)


async def cancel_leftover_actions(offers: FirmwareOffers, terminal_ids: Sequence[str]) -> int:
    """Cancel the Actions an earlier, interrupted run left open on these terminals."""
    async with offers.engine.connect() as conn:
        leftovers = await open_actions_of(conn, terminal_ids)
    cancelled = 0
    for action in leftovers:
        try:
            await offers.cancel(
                action.id,
                actor=DEMO_ACTOR,
                reason="left open by an earlier demo run; its simulated terminals start afresh",
            )
        except FirmwareError as exc:
            log.info("action %s from an earlier demo run: %s", action.id, exc)
            continue
        cancelled += 1
    return cancelled


def window_open_now(timezone: str, now: datetime | None = None) -> MaintenanceWindow:
    """A maintenance window of :data:`WINDOW_LENGTH` that opened a minute ago in ``timezone``.

    Its end is reckoned in real time, so a night the clocks change does not shorten it.
    """
    tz = ZoneInfo(timezone)
    start = (
        ((now or utcnow()) - timedelta(minutes=1)).astimezone(tz).replace(second=0, microsecond=0)
    )
    end = (start.astimezone(UTC) + WINDOW_LENGTH).astimezone(tz)
    return MaintenanceWindow(start=start.strftime("%H:%M"), end=end.strftime("%H:%M"))
