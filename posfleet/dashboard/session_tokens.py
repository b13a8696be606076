"""Signed session cookies and CSRF tokens, with the standard library's ``hmac`` only.

Pure: no aiohttp, no clock of its own (callers pass ``now``), so tests drive expiry and
tampering directly.

A session cookie reads ``v1.<session id>.<user id>.<expiry>.<signature>``: the signature is
HMAC-SHA256 over everything before it, so neither the user nor the expiry can be changed
without the server's secret. The signature lets a forged cookie be refused without a
database query; whether a well-signed session is still live (not logged out, its user
not disabled) is decided by the database (:mod:`posfleet.store.sessions`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_SECRET_BYTES = 32
"""HMAC-SHA256 keys shorter than the hash output weaken it (RFC 2104, section 3)."""

_VERSION = "v1"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_id() -> str:
    """A fresh random id (128 bits) for a session or a pre-login session."""
    return secrets.token_urlsafe(16)


def is_well_formed_id(value: str) -> bool:
    """True if ``value`` looks like an id made by :func:`new_id` (cheap input check)."""
    return bool(_ID_RE.match(value))


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser session, as carried by its cookie."""

    session_id: str
    user_id: int
    expires_at: int
    """Unix time (seconds) after which the cookie is refused."""


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens under one server secret.

    Separate keys are derived for sessions and for CSRF tokens, so a value signed for one
    purpose is never accepted for the other.
    """

    def __init__(self, secret: bytes, ttl: timedelta) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_BYTES} bytes")
        if ttl <= timedelta(0):
            raise ValueError("the session lifetime must be positive")
        self._session_key = hmac.digest(secret, b"posfleet/session/v1", hashlib.sha256)
        self._csrf_key = hmac.digest(secret, b"posfleet/csrf/v1", hashlib.sha256)
        self.ttl = ttl

    def _sign(self, key: bytes, message: str) -> str:
        return _b64(hmac.digest(key, message.encode("ascii"), hashlib.sha256))

    def issue(self, user_id: int, now: datetime) -> tuple[Session, str]:
        """A new session for ``user_id`` and the cookie value that carries it."""
        expires_at = int((now + self.ttl).timestamp())
        session = Session(new_id(), user_id, expires_at)
        body = f"{_VERSION}.{session.session_id}.{user_id}.{expires_at}"
        return session, f"{body}.{self._sign(self._session_key, body)}"

    def verify(self, cookie: str, now: datetime) -> Session | None:
        """The session in ``cookie`` if its signature is right and it has not expired."""
        if not cookie.isascii():
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(self._session_key, body)):
            return None
        # The signature is ours, so the body is well formed; parse defensively all the same.
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        _, session_id, user_id, expires_at = parts
        if not (user_id.isdigit() and expires_at.isdigit()):
            return None
        if int(expires_at) <= now.timestamp():
            return None
        return Session(session_id, int(user_id), int(expires_at))

    def csrf_token(self, binding: str) -> str:
        """The CSRF token for forms of the (pre-)session whose id is ``binding``.

        A token is only valid with the cookie it was derived from, and cannot be derived
        without the secret, so a page on another site can neither read nor forge one.
        """
        return self._sign(self._csrf_key, binding)

    def check_csrf(self, binding: str, token: str) -> bool:
        """True if ``token`` is the CSRF token of ``binding``."""
        if not (binding and token.isascii()):
            return False
        return hmac.compare_digest(token, self.csrf_token(binding))
