"""The agent's firmware updater: offers in, ``fw/status`` out, one action at a time.

An offer on ``fw/offer`` is checked (signature, key id, driver, model, versions, disk
space: :mod:`posfleet.agent.firmware_policy`) before anything is downloaded. Then:

``accepted`` -> ``downloading`` (resumable, :mod:`posfleet.agent.firmware_download`) ->
``verifying`` (the SHA-256 against the signed manifest) -> ``waiting_window`` (the offer's
window in the terminal's own time zone, :mod:`posfleet.contract.maintenance_window`; and
while the terminal is busy with a sale or an unsettled batch) -> ``installing`` (block
transfer into the inactive slot) -> ``rebooting`` (activation, then the health window)
-> ``succeeded`` (confirmed) or ``rolled_back``; ``rejected`` and ``failed`` end it early
with the reason in ``detail``.

Every state change is written to the state file (:mod:`posfleet.agent.firmware_state`)
before it is published, and every status goes through the outbox like a command result,
so neither a restart nor a broker outage loses one. An action id is worked on once: an
offer seen again re-announces where that action stands (its final status if it ended).
After a restart the updater reads its state and the terminal's slots and carries on
(:func:`posfleet.agent.firmware_install.reconcile`). A ``firmware_cancel`` command from the
centre stops an action that is not yet installing (:mod:`posfleet.agent.firmware_cancel`):
each action's steps run in a task of their own for that.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from posfleet.agent.backoff import Backoff
from posfleet.agent.drivers.base import DetectedFault, SupportsRemoteActions
from posfleet.agent.errors import OutboxError
from posfleet.agent.firmware_cancel import (
    CancelOutcome,
    Verdict,
    cancelled_detail,
    decide_cancel,
    outcome_of,
)
from posfleet.agent.firmware_config import UpdaterConfig
from posfleet.agent.firmware_download import DownloadRequest, ResumableDownload
from posfleet.agent.firmware_errors import FirmwareUpdateError, OfferRefused
from posfleet.agent.firmware_install import HealthWatch, SerialLockedDriver
from posfleet.agent.firmware_policy import (
    TerminalFacts,
    check_offer,
    salvage_action_id,
    summarise_invalid,
)
from posfleet.agent.firmware_state import ActionRecord, FirmwareStateError, FirmwareStateStore
from posfleet.agent.firmware_steps import InstallSteps
from posfleet.agent.outbox import EntryKind, Outbox
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.uplink import IncomingCommand
from posfleet.contract import (
    Channel,
    FirmwareOffer,
    UpdateState,
    UpdateStatus,
    encode,
    utcnow,
)
from posfleet.contract.maintenance_window import zone

__all__ = [
    "FINAL_STATES",
    "RETRY_AFTER_DISK_ERROR_S",
    "SPACE_MARGIN_BYTES",
    "FirmwareUpdater",
    "OfferSource",
    "UpdaterConfig",
]

if TYPE_CHECKING:
    from posfleet.firmware.signing import TrustedKeys

log = logging.getLogger(__name__)

FINAL_STATES = frozenset(
    {UpdateState.SUCCEEDED, UpdateState.FAILED, UpdateState.REJECTED, UpdateState.ROLLED_BACK}
)
SPACE_MARGIN_BYTES = 1 << 20
"""Free space kept beyond the image, so a download never fills the disk to the last byte."""
RETRY_AFTER_DISK_ERROR_S = 5.0


OfferSource = Callable[[], Awaitable[IncomingCommand]]


class FirmwareUpdater:
    """Runs firmware actions against one terminal; statuses go to the outbox."""

    def __init__(
        self,
        driver: object,
        outbox: Outbox,
        serial_lock: asyncio.Lock,
        config: UpdaterConfig,
        *,
        on_status: Callable[[], None] = lambda: None,
        on_terminal_changed: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.tz = zone(config.timezone)
        self.can_install = isinstance(driver, SupportsRemoteActions)
        self.driver: SerialLockedDriver | None = (
            SerialLockedDriver(driver, serial_lock)
            if isinstance(driver, SupportsRemoteActions)
            else None
        )
        self.store = FirmwareStateStore(config.directory)
        self.clock = clock
        self.sleep = sleep
        self._on_status = on_status
        self._on_terminal_changed = on_terminal_changed
        self._wake = asyncio.Event()
        self._gate = asyncio.Lock()
        self._step: asyncio.Task[None] | None = None
        self._watch: HealthWatch | None = None
        self._download: ResumableDownload | None = None
        self._progress_bucket = -1
        self._keys: TrustedKeys | None = None
        self.restarted = self.store.state.current is not None
        """True until the first step of an action found in the state file at start."""
        self.malformed = 0
        """Offers that could not be answered because they carry no usable action id."""
        self.outcomes: dict[str, int] = {}
        """Final statuses published, by state and reason word (``rejected:downgrade``)."""

    @property
    def current(self) -> ActionRecord | None:
        """The action under way."""
        return self.store.state.current

    # -- running ------------------------------------------------------------------------------

    async def run(self, next_offer: OfferSource, *, check_orphans: bool = True) -> None:
        """Take offers and work on the current action until cancelled.

        ``check_orphans=False``: the terminal's slots were checked for an orphaned trial
        slot already (:class:`~posfleet.agent.firmware_standby.FirmwareStandby` did).
        """
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._intake(next_offer), name="firmware-offers")
                tasks.create_task(self._work(check_orphans), name="firmware-updates")
        finally:
            if self._download is not None:
                self._download.cancel()

    def observe_fault(self, fault: DetectedFault) -> None:
        """A fault the terminal reported (the daemon forwards every one)."""
        if self._watch is not None:
            self._watch.observe(fault)

    async def _intake(self, next_offer: OfferSource) -> None:
        while True:
            incoming = await next_offer()
            try:
                await self.handle_offer(incoming)
            except (FirmwareStateError, OutboxError) as exc:
                # Not acknowledged: the broker delivers it again after the next reconnect.
                log.error("cannot record a firmware offer: %s", exc)
            except Exception:
                log.exception("unexpected error while taking a firmware offer")

    async def _work(self, check_orphans: bool = True) -> None:
        steps = InstallSteps(self)
        if check_orphans:
            await steps.check_orphan_trial()
        while True:
            if self.current is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            # In a task of its own, so that a cancel from the centre can stop it; the
            # gate keeps a new step from starting while a cancel ends the action.
            async with self._gate:
                if self.current is None:
                    continue
                step = asyncio.create_task(self._work_on(steps), name="firmware-step")
                self._step = step
            try:
                await asyncio.wait({step})
            finally:
                if not step.done():  # the updater itself is being stopped
                    step.cancel()
                    await asyncio.wait({step})
                self._step = None
            if step.cancelled():
                steps = InstallSteps(self)  # stopped by a cancel: the next action starts afresh
                continue
            try:
                step.result()
            except (FirmwareStateError, OutboxError) as exc:
                log.error("firmware updater cannot write its state: %s", exc)
                await self.sleep(RETRY_AFTER_DISK_ERROR_S)
            except Exception:
                # Nothing the updater does may end the daemon's other tasks.
                log.exception("firmware updater failed; trying again")
                await self.sleep(RETRY_AFTER_DISK_ERROR_S)

    async def _work_on(self, steps: InstallSteps) -> None:
        try:
            await steps.advance()
        except FirmwareUpdateError as exc:
            state = UpdateState.REJECTED if isinstance(exc, OfferRefused) else UpdateState.FAILED
            log.warning("firmware action failed (%s): %s", exc.reason, exc)
            await self.finish(state, str(exc), reason=exc.reason)
        except (FirmwareStateError, OutboxError):
            raise
        except Exception as exc:
            log.exception("firmware updater crashed on an action")
            await steps.give_back_good_slot()
            await self.finish(
                UpdateState.FAILED, f"agent error: {type(exc).__name__}: {exc}", reason="bug"
            )

    async def cancel(self, action_id: str, actor: str) -> CancelOutcome:
        """The centre cancelled the Action ``action_id`` (every attempt of it).

        An update of it not yet writing to the terminal is stopped, its image files
        deleted and its end published (``rejected``, "cancelled by ... at the centre");
        one installing or rebooting goes on (``refused``). Late offers of it are refused.
        """
        async with self._gate:
            decision = decide_cancel(self.current, self.store.state.finished, action_id)
            if decision.verdict is Verdict.STOP:
                download, step = self._download, self._step
                if step is not None:
                    step.cancel()
                    await asyncio.wait({step})
                if download is not None and not await download.settled():
                    log.warning("a cancelled download's thread is still running")
                # A re-offer may have handed the record to another Action meanwhile.
                decision = decide_cancel(self.current, self.store.state.finished, action_id)
            outcome = outcome_of(decision, action_id, actor)
            if decision.verdict is not Verdict.REFUSE:
                self.store.remember_cancelled(action_id, cancelled_detail(actor))
            if decision.verdict is Verdict.STOP:
                await self.finish(UpdateState.REJECTED, cancelled_detail(actor), reason="cancelled")
            self._wake.set()
        log.info("firmware cancel of action %s: %s", action_id, outcome.detail)
        return outcome

    # -- offers -------------------------------------------------------------------------------

    async def handle_offer(self, incoming: IncomingCommand) -> None:
        """Answer one ``fw/offer`` message; acknowledged once its outcome is on disk."""
        try:
            offer = FirmwareOffer.model_validate_json(incoming.payload)
        except ValidationError as exc:
            action_id = salvage_action_id(incoming.payload)
            if action_id is None:
                self.malformed += 1
                log.warning("dropped a firmware offer without a usable action id")
            elif not self._reannounce(action_id):
                self._refuse(action_id, f"malformed offer: {summarise_invalid(exc)}", "malformed")
            incoming.ack()
            return
        cancelled = self.store.cancelled_detail(offer.action_id)
        if cancelled is not None:
            # Queued at the broker before the cancel: never started.
            if not self._reannounce(offer.action_id):
                self._refuse(offer.action_id, cancelled, "cancelled")
            incoming.ack()
            return
        self._renew(offer)
        if self._reannounce(offer.action_id):
            incoming.ack()
            return
        current = self.current
        if current is not None:
            self._refuse(
                offer.action_id,
                f"another firmware update (action {current.action_id}) is in progress",
                "busy",
            )
            incoming.ack()
            return
        try:
            manifest = check_offer(offer, self._trusted, await self._facts(), self.clock())
            self._check_space(offer)
        except OfferRefused as exc:
            log.warning("firmware offer %s rejected (%s): %s", offer.action_id, exc.reason, exc)
            self._refuse(offer.action_id, str(exc), exc.reason)
            incoming.ack()
            return
        except SerialLinkError as exc:
            self._refuse(
                offer.action_id,
                f"cannot reach the terminal to check the offer: {exc}",
                "terminal_unreachable",
                state=UpdateState.FAILED,
            )
            incoming.ack()
            return
        self.store.remove_stale_images(keep=manifest.sha256)
        record = ActionRecord(offer=offer, state=UpdateState.ACCEPTED)
        self.set_state(
            record,
            UpdateState.ACCEPTED,
            f"{manifest.name} {manifest.version} ({manifest.size} bytes) verified with key "
            f"{offer.signed_manifest.key_id}; downloading",
        )
        incoming.ack()
        self._wake.set()

    def _trusted(self) -> TrustedKeys:
        if self._keys is None:
            keys = self.config.trusted_keys
            if callable(keys):
                try:
                    keys = keys()
                except Exception as exc:  # a key file gone bad since start
                    log.error("cannot load the trusted firmware keys: %s", exc)
                    raise OfferRefused(
                        f"the agent cannot load its trusted firmware keys: {exc}",
                        reason="bad_key",
                    ) from exc
            self._keys = keys
        return self._keys

    async def _facts(self) -> TerminalFacts:
        if self.driver is None:
            return TerminalFacts(self.config.driver_name, False, "", "")
        identity = await self.driver.identify()
        return TerminalFacts(
            self.config.driver_name, True, identity.model, identity.firmware_version
        )

    def _check_space(self, offer: FirmwareOffer) -> None:
        manifest = offer.signed_manifest.manifest
        partial = self.store.partial_path(manifest.sha256)
        have = partial.stat().st_size if partial.exists() else 0
        free = shutil.disk_usage(self.store.directory).free
        needed = manifest.size - have + SPACE_MARGIN_BYTES
        if free < needed:
            raise OfferRefused(
                f"the image needs {needed - SPACE_MARGIN_BYTES} more bytes in "
                f"{self.store.directory}, only {free} are free",
                reason="no_space",
            )

    def _reannounce(self, action_id: str) -> bool:
        final = self.store.final_status(action_id)
        if final is not None:
            log.info("firmware action %s seen again: re-sending its final status", action_id)
            self._emit(final)
            return True
        current = self.current
        if current is not None and current.action_id == action_id:
            self._emit(self._status(current))
            return True
        return False

    def _renew(self, offer: FirmwareOffer) -> None:
        """Take the fresh token (and window, deadline) of the current action's re-offer."""
        current = self.current
        if current is None or current.offer.signed_manifest != offer.signed_manifest:
            return
        if current.offer == offer:
            return
        self.store.save(current.model_copy(update={"offer": offer}))
        if self._download is not None:
            self._download.renew(offer.url, offer.token)
        log.info("firmware action %s: re-offered, using its new token", offer.action_id)

    def _refuse(
        self,
        action_id: str,
        detail: str,
        reason: str,
        *,
        state: UpdateState = UpdateState.REJECTED,
    ) -> None:
        final = UpdateStatus(
            action_id=action_id, state=state, detail=detail[:1024], ts=self.clock()
        )
        self.store.finish_other(final)
        self._count(state, reason)
        self._emit(final)

    # -- statuses -----------------------------------------------------------------------------

    def _status(self, record: ActionRecord) -> UpdateStatus:
        return UpdateStatus(
            action_id=record.action_id,
            state=record.state,
            progress=record.progress,
            detail=record.detail,
            ts=self.clock(),
        )

    def _emit(self, status: UpdateStatus) -> None:
        self.outbox.append_plain(Channel.FW_STATUS, EntryKind.RESULT, encode(status))
        self._on_status()

    def set_state(
        self,
        record: ActionRecord,
        state: UpdateState,
        detail: str,
        *,
        progress: float | None = None,
        emit: bool = True,
        **changes: Any,
    ) -> ActionRecord:
        """Write ``record`` in ``state`` down, then publish it (unless not ``emit``)."""
        update: dict[str, Any] = {"state": state, "detail": detail[:1024], **changes}
        latest = self.current
        if latest is not None and latest.offer.signed_manifest == record.offer.signed_manifest:
            # A re-offer of the image (the same Action, or a new one that took this one
            # over: _renew) may have renewed the token, window, deadline and action id;
            # a step still holding the older record must not write the older offer back.
            update.setdefault("offer", latest.offer)
        if progress is not None:
            update["progress"] = min(1.0, max(0.0, progress))
        elif state is not record.state:
            update["progress"] = 0.0
        new = record.model_copy(update=update)
        self.store.save(new)
        self._progress_bucket = int(new.progress / self.config.progress_step)
        if emit:
            log.info("firmware action %s: %s %s", new.action_id, state.value, new.detail)
            self._emit(self._status(new))
        return new

    def report_progress(self, done: int, total: int) -> None:
        """Publish progress of the current step, every ``progress_step`` of the way."""
        record = self.current
        if record is None or total <= 0:
            return
        fraction = min(1.0, done / total)
        bucket = int(fraction / self.config.progress_step)
        if bucket <= self._progress_bucket:
            return
        self._progress_bucket = bucket
        try:
            self._emit(self._status(record.model_copy(update={"progress": fraction})))
        except OutboxError as exc:
            log.warning("firmware progress not stored: %s", exc)

    async def finish(self, state: UpdateState, detail: str, *, reason: str = "") -> None:
        """End the current action in a final ``state``; tell the daemon the terminal changed."""
        record = self.current
        if record is None:
            return
        final = UpdateStatus(
            action_id=record.action_id,
            state=state,
            progress=1.0 if state is UpdateState.SUCCEEDED else record.progress,
            detail=detail[:1024],
            ts=self.clock(),
        )
        self.store.finish(final)
        sha256 = record.offer.signed_manifest.manifest.sha256
        if state is not UpdateState.FAILED or reason in ("sha256_mismatch", "size_mismatch"):
            # A failed download may be offered again (new token): keep what arrived.
            self.store.remove_images(sha256)
        self._count(state, reason or state.value)
        log.info("firmware action %s ended %s: %s", record.action_id, state.value, detail)
        self._emit(final)
        if self._on_terminal_changed is not None and record.state in (
            UpdateState.INSTALLING,
            UpdateState.REBOOTING,
        ):
            try:
                await self._on_terminal_changed()
            except Exception:
                log.exception("refreshing the inventory after a firmware action failed")

    def _count(self, state: UpdateState, reason: str) -> None:
        key = f"{state.value}:{reason}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    # -- helpers for the steps ----------------------------------------------------------------

    def download_for(self, record: ActionRecord) -> ResumableDownload:
        """The resumable download of ``record``'s image, configured from the settings."""
        manifest = record.offer.signed_manifest.manifest
        download = ResumableDownload(
            DownloadRequest(
                record.offer.url,
                record.offer.token,
                manifest.sha256,
                manifest.size,
                terminal_id=self.config.terminal_id,
            ),
            self.store.partial_path(manifest.sha256),
            self.store.image_path(manifest.sha256),
            chunk_bytes=self.config.download_chunk_bytes,
            timeout_s=self.config.download_timeout_s,
            backoff=self.backoff(),
            max_attempts=self.config.download_max_attempts,
            ca_file=self.config.ca_file,
            progress=self.report_progress,
            sleep=self.sleep,
        )
        self._download = download
        return download

    def download_done(self) -> None:
        """The download object is no longer in use."""
        self._download = None

    def backoff(self) -> Backoff:
        """A fresh capped, jittered backoff with the configured bounds."""
        return Backoff(base_s=self.config.retry_min_s, cap_s=self.config.retry_max_s)

    def watching(self, watch: HealthWatch | None) -> None:
        """Route the terminal's faults to ``watch`` (None: to nobody)."""
        self._watch = watch

    def local(self, moment: datetime) -> str:
        """``moment`` in the terminal's local time, for details."""
        return moment.astimezone(self.tz).strftime("%Y-%m-%d %H:%M %Z")

    def deadline_in(self, seconds: float) -> datetime:
        """The clock's now plus ``seconds``."""
        return self.clock() + timedelta(seconds=seconds)
