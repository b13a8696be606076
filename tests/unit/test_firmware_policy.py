"""What the agent refuses before downloading anything, and the reason it gives."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from posfleet.agent.firmware_errors import OfferRefused
from posfleet.agent.firmware_policy import TerminalFacts, check_offer
from posfleet.contract import FirmwareOffer, MaintenanceWindow, SignedManifest
from posfleet.firmware.signing import TrustedKeys
from tests.harness.firmware_release import ReleaseKey, release_key

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TERMINAL = TerminalFacts("maintenance", True, "PF-M100", "2.4.1")
IMAGE = b"firmware" * 1000


@pytest.fixture
def keys(tmp_path: Path) -> tuple[ReleaseKey, ReleaseKey, ReleaseKey]:
    """The current release key, the next one (rotation) and one nobody trusts."""
    return (
        release_key(tmp_path, "rel-2026"),
        release_key(tmp_path, "rel-2027"),
        release_key(tmp_path / "other", "rel-rogue"),
    )


def _trusted(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey], revoked: tuple[str, ...] = ()
) -> TrustedKeys:
    current, upcoming, _ = keys
    return TrustedKeys.from_pem_files(
        {current.key_id: current.public_path, upcoming.key_id: upcoming.public_path},
        revoked=revoked,
    )


def _offer(signed: SignedManifest, **changes: object) -> FirmwareOffer:
    fields: dict[str, object] = {
        "action_id": "A-1",
        "signed_manifest": signed,
        "url": "https://fw.example.net/firmware/download/x",
        "token": "t" * 32,
        "window": MaintenanceWindow(),
        "expires_at": NOW + timedelta(days=2),
    }
    fields.update(changes)
    return FirmwareOffer.model_validate(fields)


def _sign(key: ReleaseKey, **manifest: object) -> SignedManifest:
    fields: dict[str, object] = {"version": "2.5.0", "models": ("PF-M100", "PF-C200")}
    fields.update(manifest)
    return key.sign(IMAGE, **fields)  # type: ignore[arg-type]


def _refusal(
    offer: FirmwareOffer, trusted: TrustedKeys, terminal: TerminalFacts = TERMINAL
) -> OfferRefused:
    with pytest.raises(OfferRefused) as refused:
        check_offer(offer, trusted, terminal, NOW)
    return refused.value


def test_both_keys_of_a_rotation_are_accepted(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    for key in keys[:2]:
        manifest = check_offer(_offer(_sign(key)), _trusted(keys), TERMINAL, NOW)
        assert manifest.version == "2.5.0"


def test_a_forged_signature_is_refused(keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey]) -> None:
    signed = _sign(keys[0])
    # Someone changes the manifest after signing (a bigger image, a new hash): it no
    # longer matches the signature.
    altered = signed.model_copy(
        update={"manifest": signed.manifest.model_copy(update={"size": 999})}
    )
    refused = _refusal(_offer(altered), _trusted(keys))
    assert refused.reason == "bad_signature" and "does not verify" in str(refused)
    garbage = signed.model_copy(update={"signature": base64.b64encode(bytes(64)).decode()})
    assert _refusal(_offer(garbage), _trusted(keys)).reason == "bad_signature"


def test_an_unknown_key_id_is_refused(keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey]) -> None:
    refused = _refusal(_offer(_sign(keys[2])), _trusted(keys))
    assert refused.reason == "unknown_key" and "'rel-rogue' is not trusted" in str(refused)


def test_a_key_signed_by_a_rogue_under_a_trusted_id_does_not_verify(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    rogue = ReleaseKey("rel-2026", keys[2].private, keys[2].public_path)
    assert _refusal(_offer(_sign(rogue)), _trusted(keys)).reason == "bad_signature"


def test_a_revoked_key_id_is_refused_even_though_its_key_is_listed(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    refused = _refusal(_offer(_sign(keys[0])), _trusted(keys, revoked=("rel-2026",)))
    assert refused.reason == "revoked_key" and "revoked" in str(refused)


def test_a_wrong_model_is_refused(keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey]) -> None:
    refused = _refusal(_offer(_sign(keys[0], models=("PF-C200",))), _trusted(keys))
    assert refused.reason == "wrong_model"
    assert "'PF-M100' is not among the models" in str(refused) and "PF-C200" in str(refused)


@pytest.mark.parametrize(
    ("offered", "allow", "reason"),
    [
        ("2.4.0", False, "downgrade"),
        ("2.3.9-rc.1", False, "downgrade"),
        ("2.4.1", False, "same_version"),
    ],
)
def test_a_downgrade_or_the_same_version_is_refused(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey], offered: str, allow: bool, reason: str
) -> None:
    refused = _refusal(
        _offer(_sign(keys[0], version=offered, allow_downgrade=allow)), _trusted(keys)
    )
    assert refused.reason == reason and "2.4.1" in str(refused)


def test_a_downgrade_the_manifest_allows_is_accepted(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    signed = _sign(keys[0], version="2.4.0", allow_downgrade=True)
    assert check_offer(_offer(signed), _trusted(keys), TERMINAL, NOW).version == "2.4.0"


def test_a_terminal_below_the_minimum_version_is_refused(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    refused = _refusal(_offer(_sign(keys[0], min_version="2.4.10")), _trusted(keys))
    assert refused.reason == "below_min_version"
    assert "older than 2.4.10" in str(refused)
    # 2.4.1 < 2.4.10 numerically, but the same terminal on 2.4.10 may update.
    on_min = TerminalFacts("maintenance", True, "PF-M100", "2.4.10")
    check_offer(_offer(_sign(keys[0], min_version="2.4.10")), _trusted(keys), on_min, NOW)


def test_the_zvt_driver_cannot_install_and_says_so_first(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    zvt = TerminalFacts("zvt", False, "ZVT terminal", "unknown")
    refused = _refusal(_offer(_sign(keys[2])), _trusted(keys), zvt)
    assert refused.reason == "driver_cannot_install"
    assert str(refused) == "driver zvt cannot install firmware"


def test_expired_offers_bad_urls_and_windows_without_days_are_refused(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    signed = _sign(keys[0])
    assert _refusal(_offer(signed, expires_at=NOW), _trusted(keys)).reason == "expired"
    assert _refusal(_offer(signed, url="ftp://fw/x"), _trusted(keys)).reason == "bad_url"
    never = MaintenanceWindow(weekdays=[])
    assert _refusal(_offer(signed, window=never), _trusted(keys)).reason == "bad_window"


def test_a_running_version_without_a_number_cannot_be_compared(
    keys: tuple[ReleaseKey, ReleaseKey, ReleaseKey],
) -> None:
    odd = TerminalFacts("maintenance", True, "PF-M100", "unknown")
    assert _refusal(_offer(_sign(keys[0])), _trusted(keys), odd).reason == "unknown_version"
