"""How the firmware updater behaves: built from the settings, light enough for the daemon.

Kept apart from :mod:`posfleet.agent.firmware_updater` so that the daemon can hold its
configuration while the updater itself is on standby (:mod:`posfleet.agent.firmware_standby`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from posfleet.firmware.signing import TrustedKeys

DEFAULT_CHUNK_BYTES = 64 * 1024
"""Bytes asked of the socket per read: at most this much is in flight between file writes."""


@dataclass(frozen=True)
class UpdaterConfig:
    """How the updater behaves; built from the agent settings by the runner."""

    directory: Path
    trusted_keys: TrustedKeys | Callable[[], TrustedKeys]
    """The release keys, or how to load them when the first offer comes (saves memory)."""
    terminal_id: str = ""
    timezone: str = "UTC"
    driver_name: str = "maintenance"
    health_window_s: float = 300.0
    boot_timeout_s: float = 300.0
    health_poll_s: float = 5.0
    busy_retry_s: float = 30.0
    window_recheck_s: float = 60.0
    progress_step: float = 0.05
    download_chunk_bytes: int = DEFAULT_CHUNK_BYTES
    download_timeout_s: float = 30.0
    download_max_attempts: int = 30
    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    max_install_attempts: int = 3
    ca_file: Path | None = None
