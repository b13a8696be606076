"""The steps of one firmware action, from download to confirmation or rollback.

Each step starts from the state written down last, does its part and writes the next
state, so :meth:`InstallSteps.advance` can be started again at any point after a restart:
a download resumes from the partial file, an install reads the terminal's slots first
(:func:`~posfleet.agent.firmware_install.reconcile`) and a health window begins again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from posfleet.agent.drivers.base import FirmwareSlot, FirmwareSlots
from posfleet.agent.drivers.errors import TerminalRefusedError
from posfleet.agent.drivers.maintenance_codes import ResultCode
from posfleet.agent.firmware_errors import InstallFailed
from posfleet.agent.firmware_install import (
    HealthWatch,
    Next,
    SerialLockedDriver,
    is_busy,
    reconcile,
    transfer_image,
)
from posfleet.agent.firmware_standby import roll_back_orphan_trial, slot_text
from posfleet.agent.firmware_state import ActionRecord
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.contract import UpdateState
from posfleet.contract.maintenance_window import describe, window_state

if TYPE_CHECKING:
    from posfleet.agent.firmware_updater import FirmwareUpdater

log = logging.getLogger(__name__)

MAX_LINK_FAILURES = 10
"""Times in a row the terminal may not answer during an install before the action fails."""

_FETCHING = (UpdateState.ACCEPTED, UpdateState.DOWNLOADING, UpdateState.VERIFYING)


class InstallSteps:
    """Moves the updater's current action on, one state at a time."""

    def __init__(self, updater: FirmwareUpdater) -> None:
        self.u = updater
        self._busy_until: datetime | None = None
        self._link_failures = 0
        self._link_backoff = updater.backoff()

    @property
    def driver(self) -> SerialLockedDriver:
        """The driver; only called once the offer passed the "can install" check."""
        if self.u.driver is None:
            raise InstallFailed(
                f"driver {self.u.config.driver_name} cannot install firmware",
                reason="driver_cannot_install",
            )
        return self.u.driver

    async def advance(self) -> None:
        """Work on the current action until it ends (or fails: the caller finishes it)."""
        while (record := self.u.current) is not None:
            if record.state in _FETCHING:
                await self._fetch(record)
            elif record.state is UpdateState.WAITING_WINDOW:
                await self._wait_window(record)
            elif record.state is UpdateState.INSTALLING:
                await self._install(record)
            elif record.state is UpdateState.REBOOTING:
                await self._after_activation(record)
            else:
                await self.u.finish(record.state, record.detail)

    # -- download -----------------------------------------------------------------------------

    async def _fetch(self, record: ActionRecord) -> None:
        u, offer = self.u, record.offer
        manifest = offer.signed_manifest.manifest
        while offer.not_before is not None and u.clock() < offer.not_before:
            detail = f"the download starts at {u.local(offer.not_before)} (not before)"
            if record.detail != detail:
                record = u.set_state(record, UpdateState.ACCEPTED, detail)
            wait = (offer.not_before - u.clock()).total_seconds()
            await u.sleep(max(0.01, min(u.config.window_recheck_s, wait)))
        download = u.download_for(record)
        partial = download.partial
        have = partial.stat().st_size if partial.exists() else 0
        if download.image.exists():
            detail = "the image was downloaded before; checking it"
        elif have:
            why = "after an agent restart " if u.restarted else ""
            detail = f"resuming the download {why}at byte {have} of {manifest.size}"
        else:
            detail = f"downloading {manifest.size} bytes"
        record = u.set_state(record, UpdateState.DOWNLOADING, detail, progress=have / manifest.size)
        u.restarted = False
        try:
            await download.run()
        finally:
            u.download_done()
        stats = download.stats
        log.info(
            "firmware image %s downloaded: %d requests, %d cuts, %d restarts, from byte %d",
            manifest.sha256[:12],
            stats.requests,
            stats.cuts,
            stats.restarts,
            stats.resumed_from,
        )
        record = u.set_state(
            record,
            UpdateState.VERIFYING,
            f"SHA-256 of the {manifest.size} bytes matches the signed manifest",
            progress=1.0,
        )
        await self._wait_window(record)

    # -- the window -----------------------------------------------------------------------

    async def _wait_window(self, record: ActionRecord) -> None:
        u, offer = self.u, record.offer
        version = offer.signed_manifest.manifest.version
        while True:
            offer = (u.current or record).offer  # a re-offer may move the window or deadline
            now = u.clock()
            if now >= offer.expires_at:
                raise InstallFailed(
                    f"the offer expired at {u.local(offer.expires_at)} before the install "
                    "could start",
                    reason="expired",
                )
            state = window_state(offer.window, now, u.tz)
            busy = self._busy_until is not None and now < self._busy_until
            if state.open and not busy:
                break
            if state.open and self._busy_until is not None:
                detail, until = record.detail, self._busy_until
            else:
                if state.opens_at is None or state.opens_at >= offer.expires_at:
                    raise InstallFailed(
                        f"no maintenance window ({describe(offer.window, u.tz)}) opens before "
                        f"the offer expires at {u.local(offer.expires_at)}",
                        reason="expired",
                    )
                until = state.opens_at
                detail = (
                    f"waiting for the maintenance window ({describe(offer.window, u.tz)}); "
                    f"it opens at {u.local(until)}"
                )
            if record.state is not UpdateState.WAITING_WINDOW or record.detail != detail:
                record = u.set_state(record, UpdateState.WAITING_WINDOW, detail)
            wait = (until - now).total_seconds()
            await u.sleep(max(0.01, min(u.config.window_recheck_s, wait)))
        assert state.closes_at is not None
        u.set_state(
            record,
            UpdateState.INSTALLING,
            f"maintenance window open until {u.local(state.closes_at)}; writing {version} "
            "into the inactive slot",
        )

    # -- install --------------------------------------------------------------------------

    async def _install(self, record: ActionRecord) -> None:
        u, driver = self.u, self.driver
        manifest = record.offer.signed_manifest.manifest
        version, limit = manifest.version, u.config.max_install_attempts
        try:
            slots = await driver.firmware_status()
        except SerialLinkError as exc:
            await self._link_trouble(record, exc)
            return
        decision = reconcile(record, slots, version)
        if decision.next is Next.WATCH:
            u.set_state(record, UpdateState.REBOOTING, f"{decision.reason}; watching it")
            return
        if decision.next is Next.SUCCEEDED:
            await u.finish(UpdateState.SUCCEEDED, f"running {version}: {decision.reason}")
            return
        if decision.next is Next.ROLLED_BACK:
            await u.finish(
                UpdateState.ROLLED_BACK, f"{decision.reason}; running {slot_text(slots)}"
            )
            return
        if decision.next is Next.ROLL_BACK:
            log.warning("rolling back before the install: %s", decision.reason)
            slots = await self._go_back(record, slots, decision.reason)
        attempts = record.install_attempts + 1
        if attempts > limit:
            raise InstallFailed(
                f"the install was cut short {record.install_attempts} times (agent restart or "
                f"power loss); the terminal keeps {slot_text(slots)}",
                reason="install_interrupted",
            )
        image = u.store.image_path(manifest.sha256)
        if not image.exists():
            u.set_state(
                record, UpdateState.DOWNLOADING, "the image file is gone; downloading again"
            )
            return
        resumed = u.restarted or record.install_attempts > 0
        detail = record.detail
        if resumed:
            detail = (
                f"agent restarted during the install; the terminal kept {slot_text(slots)}, "
                f"the good slot; installing {version} again (attempt {attempts} of {limit})"
            )
        record = u.set_state(
            record,
            UpdateState.INSTALLING,
            detail,
            progress=0.0,
            emit=resumed,
            install_attempts=attempts,
            previous_slot=slots.active,
            previous_version=slots.versions.get(slots.active, ""),
        )
        u.restarted = False
        try:
            slot = await transfer_image(driver, image, version, u.report_progress)
        except TerminalRefusedError as exc:
            raise InstallFailed(
                f"the terminal refused the image: {exc.meaning} (0x{exc.result_code:02X})",
                reason="terminal_refused",
            ) from exc
        except SerialLinkError as exc:
            await self._link_trouble(
                record.model_copy(update={"install_attempts": attempts - 1}), exc
            )
            return
        self._link_failures = 0
        self._link_backoff.reset()
        await self._activate(record, slots, slot)

    async def _activate(
        self, record: ActionRecord, slots: FirmwareSlots, slot: FirmwareSlot
    ) -> None:
        u, driver = self.u, self.driver
        offer = record.offer
        version = offer.signed_manifest.manifest.version
        now = u.clock()
        again = record.install_attempts - 1  # not counted: nothing was cut short
        if not window_state(offer.window, now, u.tz).open:
            u.set_state(
                record,
                UpdateState.WAITING_WINDOW,
                f"{version} is in slot {slot}; the window closed before activation",
                install_attempts=again,
            )
            return
        record = u.set_state(
            record,
            UpdateState.REBOOTING,
            f"activating slot {slot} with {version}; the terminal reboots",
            target_slot=slot,
            rollback_before=slots.last_rollback,
            activated_at=now,
            rollback_reason="",
        )
        try:
            await driver.firmware_activate()
        except TerminalRefusedError as exc:
            if not is_busy(exc):
                raise InstallFailed(
                    f"the terminal refused to activate slot {slot}: {exc.meaning}",
                    reason="terminal_refused",
                ) from exc
            self._busy_until = now + timedelta(seconds=u.config.busy_retry_s)
            u.set_state(
                record,
                UpdateState.WAITING_WINDOW,
                f"the terminal is busy ({exc.meaning}); {version} waits in slot {slot}, "
                f"activation is tried again at {u.local(self._busy_until)}",
                activated_at=None,
                install_attempts=again,
            )
        except SerialLinkError as exc:
            log.info("no answer to the activation (%s): the terminal may be rebooting", exc)

    async def _link_trouble(self, record: ActionRecord, exc: SerialLinkError) -> None:
        self._link_failures += 1
        if self._link_failures > MAX_LINK_FAILURES:
            raise InstallFailed(
                f"the terminal did not answer {MAX_LINK_FAILURES} times in a row during the "
                f"install: {exc}",
                reason="terminal_unreachable",
            )
        delay = self._link_backoff.next_delay()
        self.u.set_state(
            record,
            UpdateState.INSTALLING,
            f"the terminal does not answer ({exc}); trying again in {delay:.0f} s",
            install_attempts=record.install_attempts,
        )
        await self.u.sleep(delay)

    # -- after activation -------------------------------------------------------------------

    async def _after_activation(self, record: ActionRecord) -> None:
        u, driver = self.u, self.driver
        manifest = record.offer.signed_manifest.manifest
        target = record.target_slot
        if target is None:
            u.set_state(record, UpdateState.INSTALLING, "no slot was activated; installing again")
            return
        if u.restarted:
            u.restarted = False
            try:
                slots = await driver.firmware_status()
            except SerialLinkError:
                pass  # still rebooting: the health window waits for it
            else:
                decision = reconcile(record, slots, manifest.version)
                if decision.next is Next.INSTALL:
                    u.set_state(
                        record,
                        UpdateState.INSTALLING,
                        "the activation did not happen before the agent restarted; "
                        f"the terminal kept {slot_text(slots)}, the good slot; installing again",
                        activated_at=None,
                    )
                    return
                if decision.next is Next.SUCCEEDED:
                    await u.finish(
                        UpdateState.SUCCEEDED, f"running {manifest.version}: {decision.reason}"
                    )
                    return
                if decision.next is Next.ROLLED_BACK:
                    await u.finish(
                        UpdateState.ROLLED_BACK, f"{decision.reason}; running {slot_text(slots)}"
                    )
                    return
        window_s = u.config.health_window_s
        watch = HealthWatch(
            driver,
            target=target,
            version=manifest.version,
            window_s=window_s,
            boot_timeout_s=u.config.boot_timeout_s,
            poll_s=u.config.health_poll_s,
            clock=u.clock,
            sleep=u.sleep,
        )

        def back(slots: FirmwareSlots) -> None:
            current = u.current
            if current is not None:
                u.set_state(
                    current,
                    UpdateState.REBOOTING,
                    f"back on {slot_text(slots)} on trial; confirming at "
                    f"{u.local(u.deadline_in(window_s))} unless a critical fault shows",
                )

        u.watching(watch)
        try:
            verdict = await watch.run(back)
        finally:
            u.watching(None)
        record = u.current or record
        if verdict.healthy:
            await self._confirm(record)
            await u.finish(
                UpdateState.SUCCEEDED,
                f"running {manifest.version} on slot {target}, confirmed after a "
                f"{window_s:g} s health window",
            )
        elif verdict.rolled_back_by_terminal:
            slots_text = await self._slots_text()
            await u.finish(UpdateState.ROLLED_BACK, f"{verdict.reason}; running {slots_text}")
        else:
            after = await self._go_back(record, await self._status_patiently(), verdict.reason)
            await u.finish(UpdateState.ROLLED_BACK, f"{verdict.reason}; back on {slot_text(after)}")

    async def _confirm(self, record: ActionRecord) -> None:
        driver, backoff = self.driver, self.u.backoff()
        for _ in range(MAX_LINK_FAILURES):
            try:
                await driver.firmware_confirm()
                return
            except TerminalRefusedError as exc:
                if exc.result_code != ResultCode.WRONG_STATE:
                    raise InstallFailed(
                        f"the terminal refused to confirm: {exc.meaning}", reason="terminal_refused"
                    ) from exc
                slots = await driver.firmware_status()
                if slots.active is record.target_slot and not slots.pending_confirm:
                    return  # confirmed already (a reply lost on the line)
                raise InstallFailed(
                    f"nothing to confirm: the terminal runs {slot_text(slots)}",
                    reason="terminal_refused",
                ) from exc
            except SerialLinkError:
                await self.u.sleep(backoff.next_delay())
        raise InstallFailed(
            "the terminal did not answer the confirmation; it rolls back on its own",
            reason="terminal_unreachable",
        )

    async def _status_patiently(self) -> FirmwareSlots | None:
        backoff = self.u.backoff()
        for _ in range(MAX_LINK_FAILURES):
            try:
                return await self.driver.firmware_status()
            except SerialLinkError:
                await self.u.sleep(backoff.next_delay())
        return None

    async def _slots_text(self) -> str:
        slots = await self._status_patiently()
        return "an unknown slot (no answer)" if slots is None else slot_text(slots)

    async def _go_back(
        self, record: ActionRecord, slots: FirmwareSlots | None, reason: str
    ) -> FirmwareSlots:
        """Roll back to the previous slot, waiting out a busy terminal; the slots after."""
        u, driver = self.u, self.driver
        record = u.set_state(
            record, UpdateState.REBOOTING, f"rolling back: {reason}", rollback_reason=reason
        )
        backoff = u.backoff()
        failures = 0
        while True:
            try:
                if slots is None:
                    slots = await driver.firmware_status()
                if not slots.pending_confirm and slots.active is not record.target_slot:
                    return slots
                await driver.firmware_rollback()
                slots = await driver.firmware_status()
                return slots
            except TerminalRefusedError as exc:
                if not is_busy(exc):
                    raise InstallFailed(
                        f"{reason}; the terminal refused to roll back: {exc.meaning}",
                        reason="rollback_refused",
                    ) from exc
                u.set_state(
                    record,
                    UpdateState.REBOOTING,
                    f"rolling back as soon as the terminal is free ({exc.meaning}): {reason}",
                )
                await u.sleep(u.config.busy_retry_s)
            except SerialLinkError as exc:
                failures += 1
                if failures >= MAX_LINK_FAILURES:
                    raise InstallFailed(
                        f"{reason}; the terminal did not answer the rollback ({exc}); it rolls "
                        "back on its own when the slot stays unconfirmed",
                        reason="terminal_unreachable",
                    ) from exc
                await u.sleep(backoff.next_delay())
            slots = None

    # -- outside an action --------------------------------------------------------------------

    async def check_orphan_trial(self) -> None:
        """At start: a trial slot no action vouches for goes back to the good slot."""
        if self.u.current is not None or self.u.driver is None:
            return
        await roll_back_orphan_trial(self.u.driver)

    async def give_back_good_slot(self) -> None:
        """After an unexpected error mid-action: never leave a trial slot behind."""
        record = self.u.current
        if record is None or record.state is not UpdateState.REBOOTING or self.u.driver is None:
            return
        try:
            slots = await self.u.driver.firmware_status()
            if slots.pending_confirm and slots.active is record.target_slot:
                await self.u.driver.firmware_rollback()
        except Exception:
            log.exception("could not roll the terminal back after an updater error")
