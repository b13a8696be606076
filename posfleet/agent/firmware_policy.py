"""What the agent checks before it downloads a single byte of an offered image. Pure.

:func:`check_offer` returns the verified manifest or raises
:class:`~posfleet.agent.firmware_errors.OfferRefused` whose message goes into
``UpdateStatus.detail`` (state ``rejected``) and whose ``reason`` is one word:

=====================  ==============================================================
``driver_cannot_install``  the terminal's driver has no firmware transfer (ZVT)
``expired``                the offer's ``expires_at`` has passed
``revoked_key``            signed with a key id on the revoked list
``unknown_key``            signed with a key id the agent does not trust
``bad_signature``          the signature does not verify (forged or altered manifest)
``bad_url``                the download URL is not http(s)
``bad_window``             the maintenance window opens on no weekday
``wrong_model``            the terminal's model is not among the manifest's models
``unknown_version``        the running version cannot be compared (no version number)
``same_version``           the terminal already runs this version
``below_min_version``      the running version is older than the manifest's minimum
``downgrade``              older than the running version and not allowed by the manifest
=====================  ==============================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import ValidationError

from posfleet.agent.firmware_errors import OfferRefused
from posfleet.contract import FirmwareManifest, FirmwareOffer

if TYPE_CHECKING:
    from posfleet.firmware.signing import TrustedKeys

# posfleet.firmware loads cryptography (megabytes of resident memory on a terminal): it is
# imported when an offer is checked, not when the agent starts.

_COMPARABLE = re.compile(r"^v?[0-9]")


@dataclass(frozen=True, slots=True)
class TerminalFacts:
    """What the checks need to know about the terminal, as its driver reported it."""

    driver_name: str
    can_install: bool
    model: str
    firmware_version: str


def check_offer(
    offer: FirmwareOffer,
    keys: TrustedKeys | Callable[[], TrustedKeys],
    terminal: TerminalFacts,
    now: datetime,
) -> FirmwareManifest:
    """The verified manifest, or :class:`OfferRefused` naming the first check that failed.

    ``keys`` may be a loader: it is called only once the cheap checks passed.
    """
    if not terminal.can_install:
        raise OfferRefused(
            f"driver {terminal.driver_name} cannot install firmware",
            reason="driver_cannot_install",
        )
    if offer.expires_at <= now:
        raise OfferRefused(
            f"offer expired at {offer.expires_at.isoformat()} (received {now.isoformat()})",
            reason="expired",
        )
    from posfleet.firmware.errors import SignatureError

    trusted = keys() if callable(keys) else keys
    try:
        manifest = trusted.verify(offer.signed_manifest)
    except SignatureError as exc:
        raise OfferRefused(str(exc), reason=exc.reason) from exc
    scheme = urlsplit(offer.url).scheme
    if scheme not in ("http", "https"):
        raise OfferRefused(
            f"download URL scheme {scheme or '(none)'!r} is not http or https", reason="bad_url"
        )
    if not offer.window.weekdays:
        raise OfferRefused("the maintenance window opens on no weekday", reason="bad_window")
    check_manifest(manifest, terminal)
    return manifest


def check_manifest(manifest: FirmwareManifest, terminal: TerminalFacts) -> None:
    """Model, minimum version and downgrade rule of a verified manifest against the terminal."""
    from posfleet.firmware.versions import FirmwareVersion

    if terminal.model not in manifest.models:
        raise OfferRefused(
            f"terminal model {terminal.model!r} is not among the models "
            f"{manifest.name} {manifest.version} is built for ({', '.join(manifest.models)})",
            reason="wrong_model",
        )
    running_text = terminal.firmware_version
    if not _COMPARABLE.match(running_text):
        raise OfferRefused(
            f"the running firmware version {running_text!r} cannot be compared with "
            f"{manifest.version}",
            reason="unknown_version",
        )
    running, offered = FirmwareVersion(running_text), FirmwareVersion(manifest.version)
    if offered == running:
        raise OfferRefused(
            f"the terminal already runs firmware {running_text}", reason="same_version"
        )
    if manifest.min_version is not None and running < FirmwareVersion(manifest.min_version):
        raise OfferRefused(
            f"the terminal runs {running_text}, older than {manifest.min_version}, the oldest "
            f"version {manifest.version} may update from",
            reason="below_min_version",
        )
    if offered < running and not manifest.allow_downgrade:
        raise OfferRefused(
            f"{manifest.version} is older than the running {running_text} and the manifest "
            "does not allow a downgrade",
            reason="downgrade",
        )


def salvage_action_id(payload: bytes) -> str | None:
    """The ``action_id`` of a payload that is JSON but no valid offer, if it is usable."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    candidate = data.get("action_id")
    if isinstance(candidate, str) and 1 <= len(candidate) <= 64:
        return candidate
    return None


def summarise_invalid(exc: ValidationError) -> str:
    """The first few validation errors of an offer, one line."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'offer'}: {e['msg']}"
        for e in exc.errors(include_url=False)[:5]
    )
