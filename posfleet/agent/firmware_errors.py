"""Why a firmware update stops: one error per outcome, each with a short machine reason.

``reason`` is a stable word (``bad_signature``, ``downgrade``, ``http_403`` ...) for
counters and tests; the message is the sentence that goes into ``UpdateStatus.detail``.
"""

from __future__ import annotations

from posfleet.agent.errors import AgentError


class FirmwareUpdateError(AgentError):
    """Base of the updater's errors: the update cannot go on, and why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OfferRefused(FirmwareUpdateError):
    """The offer fails a check made before anything is downloaded: state ``rejected``."""


class DownloadFailed(FirmwareUpdateError):
    """The image cannot be downloaded, or what arrived is not the image: state ``failed``."""


class InstallFailed(FirmwareUpdateError):
    """The terminal would not take or keep the image: state ``failed``."""
