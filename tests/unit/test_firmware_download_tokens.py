"""Download tokens: bound to terminal, action, artifact and expiry; anything else refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from posfleet.contract import FirmwareOffer
from posfleet.firmware.download_tokens import (
    DownloadTokenError,
    DownloadTokens,
    TokenRefusal,
    bearer_token,
)
from posfleet.firmware.errors import FirmwareError

NOW = datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
SHA = "ab" * 32
OTHER_SHA = "cd" * 32
TOKENS = DownloadTokens(bytes(range(32)))


def _token(terminal: str = "T-1", action: str = "A-17", *, ttl_s: int = 3600) -> str:
    return TOKENS.issue(terminal, action, SHA, NOW + timedelta(seconds=ttl_s))


def _refusal(token: str | None, *, sha: str = SHA, terminal: str | None = "T-1") -> TokenRefusal:
    with pytest.raises(DownloadTokenError) as caught:
        TOKENS.verify(token, sha256=sha, terminal_id=terminal, now=NOW)
    return caught.value.reason


def test_a_fresh_token_grants_its_terminal_its_artifact() -> None:
    grant = TOKENS.verify(_token(), sha256=SHA, terminal_id="T-1", now=NOW)
    assert (grant.terminal_id, grant.action_id, grant.sha256) == ("T-1", "A-17", SHA)
    assert grant.expires_at == NOW + timedelta(hours=1)


def test_another_terminal_presenting_the_token_is_refused() -> None:
    assert _refusal(_token(), terminal="T-2") is TokenRefusal.OTHER_TERMINAL


def test_a_request_that_does_not_name_its_terminal_is_refused() -> None:
    assert _refusal(_token(), terminal=None) is TokenRefusal.MISSING_TERMINAL


def test_an_expired_token_is_refused_and_says_when_it_expired() -> None:
    token = _token(ttl_s=-1)
    with pytest.raises(DownloadTokenError, match="expired at 2026-12-02T21:59:59") as caught:
        TOKENS.verify(token, sha256=SHA, terminal_id="T-1", now=NOW)
    assert caught.value.reason is TokenRefusal.EXPIRED


def test_a_token_for_another_artifact_is_refused() -> None:
    assert _refusal(_token(), sha=OTHER_SHA) is TokenRefusal.WRONG_ARTIFACT


@pytest.mark.parametrize("field", [1, 2, 3])
def test_editing_any_signed_field_makes_the_token_forged(field: int) -> None:
    parts = _token().split(".")
    replacement = {1: str(int(parts[1]) + 86400), 2: "T-2", 3: "QS0xOA"}
    parts[field] = replacement[field]
    assert _refusal(".".join(parts), terminal=parts[2]) is TokenRefusal.FORGED


def test_a_token_under_another_secret_is_forged() -> None:
    foreign = DownloadTokens(b"x" * 32).issue("T-1", "A-17", SHA, NOW + timedelta(hours=1))
    assert _refusal(foreign) is TokenRefusal.FORGED


@pytest.mark.parametrize(
    "token", ["garbage", "v1.1.T-1.QQ.abababab", "v2" + _token()[2:], _token() + "x", "." * 5]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert _refusal(token) is TokenRefusal.MALFORMED


def test_no_token_at_all_is_refused() -> None:
    assert _refusal(None) is TokenRefusal.MISSING


def test_the_longest_token_fits_a_firmware_offer() -> None:
    token = TOKENS.issue("T" * 64, "é" * 32, SHA, NOW + timedelta(days=30))
    limit = FirmwareOffer.model_fields["token"].metadata
    assert len(token) <= 256, limit
    assert TOKENS.verify(token, sha256=SHA, terminal_id="T" * 64, now=NOW).action_id == "é" * 32


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(FirmwareError, match="at least 32 bytes"):
        DownloadTokens(b"short")


def test_the_bearer_header_wins_over_the_query() -> None:
    assert bearer_token("Bearer abc", "def") == "abc"
    assert bearer_token("Basic abc", "def") == "def"
    assert bearer_token(None, None) is None
