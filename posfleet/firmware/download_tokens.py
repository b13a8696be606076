"""Short-lived download tokens: HMAC-SHA256 over terminal, action, artifact and expiry.

Pure (standard library only), so the agent may import it for the header names too.

A token reads ``v1.<expires>.<terminal_id>.<action_id, base64url>.<sha256[:8]>.<mac>``,
where ``mac`` is the base64url HMAC-SHA256, under the centre's download secret, of the
version, expiry, terminal id, action id and the artifact's *full* SHA-256. The plain
fields only let the service say why a token is refused (another terminal's, expired,
for another artifact); the MAC is what makes them trustworthy, and it is compared in
constant time. At most 218 characters, so it fits ``FirmwareOffer.token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from posfleet.firmware.errors import FirmwareError

TOKEN_VERSION = "v1"
TERMINAL_HEADER = "X-Posfleet-Terminal-Id"
"""The header in which the agent names itself on every download request."""

MIN_SECRET_BYTES = 32
_TERMINAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_MAC_CHARS = 43  # 32 bytes in unpadded base64url


class TokenRefusal(StrEnum):
    """Why a download token is refused; the word is the problem's ``reason``."""

    MISSING = "missing-token"
    MALFORMED = "malformed"
    FORGED = "forged"
    WRONG_ARTIFACT = "wrong-artifact"
    OTHER_TERMINAL = "other-terminal"
    MISSING_TERMINAL = "missing-terminal"
    EXPIRED = "expired"
    REPLAYED_AFTER_FINAL = "replayed-after-final"


class DownloadTokenError(FirmwareError):
    """A download token that must be refused; ``reason`` says which rule it broke."""

    def __init__(self, message: str, *, reason: TokenRefusal) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DownloadGrant:
    """What a verified token allows: this terminal fetches this artifact for this action."""

    terminal_id: str
    action_id: str
    sha256: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DownloadTokens:
    """Issues and verifies download tokens under one secret (keep it in ``var_dir``)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise FirmwareError(
                f"the download token secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        self._secret = secret

    def _mac(self, expires: int, terminal_id: str, action_id: str, sha256: str) -> str:
        message = "\n".join((TOKEN_VERSION, str(expires), terminal_id, action_id, sha256))
        return _b64(hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).digest())

    def issue(self, terminal_id: str, action_id: str, sha256: str, expires_at: datetime) -> str:
        """A token letting ``terminal_id`` download ``sha256`` for ``action_id`` until then."""
        if not _TERMINAL_ID.match(terminal_id):
            raise FirmwareError(f"terminal id {terminal_id!r} is not a valid terminal id")
        if not 1 <= len(action_id) <= 64:
            raise FirmwareError("an action id is 1 to 64 characters")
        if not _SHA256.match(sha256):
            raise FirmwareError(f"{sha256!r} is not a lowercase hex SHA-256")
        if expires_at.tzinfo is None:
            raise FirmwareError("a token's expiry needs a UTC offset")
        expires = int(expires_at.timestamp())
        mac = self._mac(expires, terminal_id, action_id, sha256)
        action = _b64(action_id.encode("utf-8"))
        return f"{TOKEN_VERSION}.{expires}.{terminal_id}.{action}.{sha256[:8]}.{mac}"

    def verify(
        self, token: str | None, *, sha256: str, terminal_id: str | None, now: datetime
    ) -> DownloadGrant:
        """The grant of a token presented for ``sha256`` by ``terminal_id``, or why not.

        Raises :class:`DownloadTokenError`. Whether the action is still open is the
        caller's question (the store knows); everything else is decided here.
        """
        if not token:
            raise DownloadTokenError(
                "send the offer's download token (Authorization: Bearer <token>)",
                reason=TokenRefusal.MISSING,
            )
        expires, token_terminal, action_id, sha_prefix, mac = _parse(token)
        expected = self._mac(expires, token_terminal, action_id, sha256)
        if not hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii")):
            if not hmac.compare_digest(sha_prefix.encode("ascii"), sha256[:8].encode("ascii")):
                raise DownloadTokenError(
                    f"this token was issued for artifact {sha_prefix}..., not {sha256[:8]}...",
                    reason=TokenRefusal.WRONG_ARTIFACT,
                )
            raise DownloadTokenError(
                "the token's signature does not verify", reason=TokenRefusal.FORGED
            )
        if not terminal_id:
            raise DownloadTokenError(
                f"name the terminal in the {TERMINAL_HEADER} header",
                reason=TokenRefusal.MISSING_TERMINAL,
            )
        if not hmac.compare_digest(token_terminal.encode(), terminal_id.encode()):
            raise DownloadTokenError(
                f"this token was issued to terminal {token_terminal}, not {terminal_id}",
                reason=TokenRefusal.OTHER_TERMINAL,
            )
        expires_at = datetime.fromtimestamp(expires, UTC)
        if now >= expires_at:
            raise DownloadTokenError(
                f"the token expired at {expires_at.isoformat()}; the next offer brings a new one",
                reason=TokenRefusal.EXPIRED,
            )
        return DownloadGrant(token_terminal, action_id, sha256, expires_at)


def _parse(token: str) -> tuple[int, str, str, str, str]:
    malformed = DownloadTokenError("the download token is malformed", reason=TokenRefusal.MALFORMED)
    parts = token.split(".")
    if len(token) > 256 or len(parts) != 6 or parts[0] != TOKEN_VERSION:
        raise malformed
    _, expires, terminal_id, action_b64, sha_prefix, mac = parts
    if not (expires.isdigit() and len(expires) <= 12 and _TERMINAL_ID.match(terminal_id)):
        raise malformed
    if not (re.fullmatch(r"[0-9a-f]{8}", sha_prefix) and len(mac) == _MAC_CHARS):
        raise malformed
    try:
        action_id = _unb64(action_b64).decode("utf-8")
        _unb64(mac)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise malformed from None
    if not 1 <= len(action_id) <= 64:
        raise malformed
    return int(expires), terminal_id, action_id, sha_prefix, mac


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token from ``Authorization: Bearer <token>``, else from ``?token=``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def download_path(sha256: str) -> str:
    """The path under the public base URL at which an artifact is downloaded."""
    return f"/firmware/download/{sha256}"
