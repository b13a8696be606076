"""Errors of the firmware package; one base class, context as attributes."""

from __future__ import annotations


class FirmwareError(Exception):
    """Base of every firmware error."""


class SignatureError(FirmwareError):
    """A manifest's signature, key id or key file cannot be trusted.

    ``reason`` is a short machine-readable word (``revoked_key``, ``unknown_key``,
    ``bad_signature``, ``bad_key``) for counters and ``UpdateStatus.detail``.
    """

    def __init__(self, message: str, *, reason: str = "bad_key") -> None:
        super().__init__(message)
        self.reason = reason


class ArtifactError(FirmwareError):
    """An image that cannot become (or is not) an artifact.

    ``reason`` is a short word for counters and API errors: ``size_mismatch``,
    ``sha256_mismatch``, ``too_large``, ``conflict``, ``not_found``, ``ambiguous``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ArtifactNotFoundError(ArtifactError):
    """No artifact (or no blob) matches what was asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="not_found")
