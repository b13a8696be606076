"""The firmware updater's state on disk: the action under way and the final status of past ones.

One JSON file, ``<state_dir>/firmware/updater.json``, replaced atomically on every change
(temporary file, ``fsync``, ``rename``, ``fsync`` of the folder), so after a crash or a
power loss it holds either the previous or the new state, never half of one. Beside it
live the image files: ``<sha256>.part`` while downloading (plus ``<sha256>.etag``, the
validator the server gave) and ``<sha256>.img`` once the SHA-256 checked out.

Why a file and not the outbox database: the state is one small document read at start
and rewritten a few dozen times per update, and keeping it apart lets the image files
and their state be inspected (or removed) together by someone on the terminal.

A file that cannot be parsed is moved aside (``updater.json.corrupt``) and counted; the
updater then starts empty rather than not at all.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posfleet.agent.drivers.base import FirmwareSlot
from posfleet.agent.errors import AgentError
from posfleet.agent.firmware_standby import STATE_FILE
from posfleet.contract import (
    AwareDatetime,
    FirmwareOffer,
    UpdateState,
    UpdateStatus,
    offer_belongs_to,
)

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 200
"""Finished actions remembered, so a re-published offer gets its final status again."""


class ActionRecord(BaseModel):
    """The action under way and how far it got."""

    model_config = ConfigDict(extra="forbid")

    offer: FirmwareOffer
    state: UpdateState
    detail: Annotated[str, Field(max_length=1024)] = ""
    progress: Annotated[float, Field(ge=0, le=1)] = 0.0
    previous_slot: FirmwareSlot | None = None
    """The slot the terminal ran when the install began: the good one to go back to."""
    previous_version: str | None = None
    target_slot: FirmwareSlot | None = None
    """The slot the image was written to."""
    rollback_before: str = ""
    """The terminal's ``last_rollback`` at activation: a new value means it rolled back itself."""
    activated_at: AwareDatetime | None = None
    rollback_reason: Annotated[str, Field(max_length=1024)] = ""
    """Why the updater decided to roll back, written before it asks the terminal to."""
    install_attempts: Annotated[int, Field(ge=0)] = 0
    """Installs started; one cut short by a restart counts, so a crash loop ends."""

    @property
    def action_id(self) -> str:
        """The action this record is about."""
        return self.offer.action_id


class UpdaterState(BaseModel):
    """Everything in ``updater.json``."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    current: ActionRecord | None = None
    finished: list[UpdateStatus] = Field(default_factory=list)
    """Final status of past actions, oldest first."""
    cancelled: dict[str, Annotated[str, Field(max_length=1024)]] = Field(default_factory=dict)
    """Actions the centre cancelled (its ``firmware_cancel``), oldest first, with the
    sentence a late offer of any of their attempts is refused with."""


class FirmwareStateError(AgentError):
    """The updater's state could not be written (disk full, read-only file system)."""


class FirmwareStateStore:
    """Reads and atomically rewrites ``updater.json``; knows where the image files go."""

    def __init__(self, directory: Path, *, history: int = DEFAULT_HISTORY) -> None:
        self.directory = directory
        self.history = history
        self.corrupt_files = 0
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state = self._load()

    @property
    def path(self) -> Path:
        """The state file."""
        return self.directory / STATE_FILE

    def partial_path(self, sha256: str) -> Path:
        """Where a download of the image ``sha256`` accumulates."""
        return self.directory / f"{sha256}.part"

    def image_path(self, sha256: str) -> Path:
        """Where the complete, verified image ``sha256`` is kept until installed."""
        return self.directory / f"{sha256}.img"

    def _load(self) -> UpdaterState:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return UpdaterState()
        except OSError as exc:
            raise FirmwareStateError(f"cannot read {self.path}: {exc}") from exc
        try:
            return UpdaterState.model_validate_json(raw)
        except ValidationError as exc:
            self.corrupt_files += 1
            aside = self.path.with_name(STATE_FILE + ".corrupt")
            log.error("%s is not a valid updater state, moved to %s: %s", self.path, aside, exc)
            os.replace(self.path, aside)
            return UpdaterState()

    def final_status(self, action_id: str) -> UpdateStatus | None:
        """The final status of a finished action, if it is still remembered."""
        for status in reversed(self.state.finished):
            if status.action_id == action_id:
                return status
        return None

    def cancelled_detail(self, offer_action_id: str) -> str | None:
        """Why an offer is refused if its Action was cancelled at the centre, else None."""
        for action_id, detail in self.state.cancelled.items():
            if offer_belongs_to(offer_action_id, action_id):
                return detail
        return None

    def remember_cancelled(self, action_id: str, detail: str) -> None:
        """Note that the centre cancelled ``action_id`` (every attempt); written at once."""
        cancelled = {k: v for k, v in self.state.cancelled.items() if k != action_id}
        cancelled[action_id] = detail[:1024]
        kept = dict(list(cancelled.items())[-self.history :])
        self.state = self.state.model_copy(update={"cancelled": kept})
        self._write()

    def save(self, current: ActionRecord | None) -> None:
        """Make ``current`` the action under way (None: no action) and write it down."""
        self.state = self.state.model_copy(update={"current": current})
        self._write()

    def finish(self, final: UpdateStatus) -> None:
        """Record ``final`` as the end of the current action and clear it, in one write."""
        self._remember(final, current=None)

    def finish_other(self, final: UpdateStatus) -> None:
        """Record ``final`` for an action that never started (refused); the current one stays."""
        self._remember(final, current=self.state.current)

    def _remember(self, final: UpdateStatus, *, current: ActionRecord | None) -> None:
        finished = [s for s in self.state.finished if s.action_id != final.action_id]
        finished.append(final)
        self.state = UpdaterState(
            current=current, finished=finished[-self.history :], cancelled=self.state.cancelled
        )
        self._write()

    def _write(self) -> None:
        data = self.state.model_dump_json(indent=1).encode("utf-8")
        tmp = self.path.with_name(STATE_FILE + ".tmp")
        try:
            with tmp.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise FirmwareStateError(f"cannot write {self.path}: {exc}") from exc

    def remove_images(self, sha256: str) -> None:
        """Delete every file of the image ``sha256`` (partial, validator, complete)."""
        for path in (
            self.partial_path(sha256),
            self.partial_path(sha256).with_suffix(".etag"),
            self.image_path(sha256),
        ):
            path.unlink(missing_ok=True)

    def remove_stale_images(self, keep: str | None) -> list[str]:
        """Delete image files of every image but ``keep``; returns the names removed."""
        removed = []
        for path in self.directory.iterdir():
            if path.suffix in (".part", ".etag", ".img") and path.stem != keep:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_iso(moment: datetime) -> str:
    """A short ISO text of ``moment`` for details (seconds precision)."""
    return moment.replace(microsecond=0).isoformat()
