"""A cancel from the centre: which updates the agent stops, which it lets finish, and what
it says; late offers of a cancelled Action are refused. The updater runs for real here,
on an in-memory driver-less terminal and a real outbox; the pty test is in
``tests/component/test_agent_firmware_cancel.py``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.agent.commands import CommandDispatcher
from posfleet.agent.firmware_cancel import REFUSAL, Verdict, decide_cancel, outcome_of
from posfleet.agent.firmware_state import ActionRecord, FirmwareStateStore
from posfleet.agent.firmware_updater import FirmwareUpdater, UpdaterConfig
from posfleet.agent.outbox import Outbox
from posfleet.agent.uplink import IncomingCommand
from posfleet.contract import (
    Channel,
    CommandResult,
    FirmwareManifest,
    FirmwareOffer,
    MaintenanceWindow,
    SignedManifest,
    UpdateState,
    UpdateStatus,
    offer_belongs_to,
)
from tests.harness import async_wait_for

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SHA = "cd" * 32
NIGHT = MaintenanceWindow(start="22:00", end="06:00")


def _offer(action_id: str = "17.1") -> FirmwareOffer:
    manifest = FirmwareManifest(
        name="pos-os", version="2.5.0", sha256=SHA, size=1000, models=["PF-M100"]
    )
    return FirmwareOffer(
        action_id=action_id,
        signed_manifest=SignedManifest(manifest=manifest, key_id="k", signature="A" * 86 + "=="),
        url="http://fw.invalid/x",
        token="t" * 32,
        window=NIGHT,
        expires_at=NOW + timedelta(days=1),
    )


def _record(state: UpdateState, action_id: str = "17.1", **fields: Any) -> ActionRecord:
    return ActionRecord(offer=_offer(action_id), state=state, detail="as before", **fields)


def _final(action_id: str, state: UpdateState) -> UpdateStatus:
    return UpdateStatus(action_id=action_id, state=state, detail="done", ts=NOW)


@pytest.mark.parametrize(
    ("offer_id", "action_id", "same"),
    [
        ("17.1", "17", True),
        ("17.12", "17", True),
        ("17", "17", True),
        ("170.1", "17", False),
        ("1.7", "17", False),
        ("17.x", "17", False),
        ("17.", "17", False),
        ("ACT-3.2", "ACT-3", True),
        ("17.1", "17.1", True),
        ("17.1", "17.2", False),
    ],
)
def test_a_cancel_covers_every_attempt_of_its_action_and_nothing_else(
    offer_id: str, action_id: str, same: bool
) -> None:
    assert offer_belongs_to(offer_id, action_id) is same


@pytest.mark.parametrize(
    "state",
    [
        UpdateState.ACCEPTED,
        UpdateState.DOWNLOADING,
        UpdateState.VERIFYING,
        UpdateState.WAITING_WINDOW,
    ],
)
def test_an_update_not_writing_to_the_terminal_yet_is_stopped(state: UpdateState) -> None:
    decision = decide_cancel(_record(state, "17.2"), [], "17")
    assert decision.verdict is Verdict.STOP
    outcome = outcome_of(decision, "17", "user:olga")
    assert outcome.stopped and not outcome.refused and outcome.state == state.value
    assert "cancelled by user:olga at the centre" in outcome.detail
    assert "the downloaded image was deleted" in outcome.detail


@pytest.mark.parametrize("state", [UpdateState.INSTALLING, UpdateState.REBOOTING])
def test_an_update_installing_or_rebooting_is_not_stopped(state: UpdateState) -> None:
    decision = decide_cancel(_record(state), [], "17")
    assert decision.verdict is Verdict.REFUSE
    outcome = outcome_of(decision, "17", "user:olga")
    assert outcome.refused and not outcome.stopped
    assert (
        outcome.detail == REFUSAL == ("installing: cannot stop safely; it will finish or roll back")
    )


def test_a_deferred_activation_is_stopped_and_says_the_old_firmware_stays() -> None:
    # The image went into slot B, then the window closed before activation.
    record = _record(UpdateState.WAITING_WINDOW, install_attempts=1, previous_version="2.4.1")
    outcome = outcome_of(decide_cancel(record, [], "17"), "17", "ops")
    assert outcome.stopped
    assert "keeps running 2.4.1, the image in its inactive slot is never activated" in (
        outcome.detail
    )


def test_another_actions_update_is_left_alone_and_an_ended_one_is_named() -> None:
    other = _record(UpdateState.DOWNLOADING, "18.1")
    finished = [_final("17.1", UpdateState.FAILED), _final("17.2", UpdateState.SUCCEEDED)]
    decision = decide_cancel(other, finished, "17")
    assert decision.verdict is Verdict.ENDED and decision.final == finished[-1]
    outcome = outcome_of(decision, "17", "ops")
    assert not outcome.stopped and not outcome.refused
    assert outcome.detail == "nothing to stop: 17.2 already ended succeeded here"

    unknown = outcome_of(decide_cancel(other, finished, "19"), "19", "ops")
    assert unknown.state == "" and not unknown.stopped
    assert "an offer of it that arrives later is refused" in unknown.detail


def test_cancelled_actions_are_remembered_across_a_restart_and_bounded(tmp_path: Path) -> None:
    store = FirmwareStateStore(tmp_path, history=3)
    store.save(_record(UpdateState.DOWNLOADING, "9.1"))
    for n in range(1, 6):
        store.remember_cancelled(str(n), f"cancelled by op{n} at the centre")
    store.finish(_final("9.1", UpdateState.SUCCEEDED))

    again = FirmwareStateStore(tmp_path, history=3)
    assert list(again.state.cancelled) == ["3", "4", "5"]
    assert again.cancelled_detail("5.2") == "cancelled by op5 at the centre"
    assert again.cancelled_detail("1.1") is None and again.cancelled_detail("55.1") is None
    assert again.final_status("9.1") is not None


# -- the updater itself -----------------------------------------------------------------------


@dataclass
class Updater:
    updater: FirmwareUpdater
    outbox: Outbox
    directory: Path

    def statuses(self) -> list[UpdateStatus]:
        return [
            UpdateStatus.model_validate_json(e.payload)
            for e in self.outbox.peek(1000)
            if e.channel is Channel.FW_STATUS
        ]

    def results(self) -> list[CommandResult]:
        return [
            CommandResult.model_validate_json(e.payload)
            for e in self.outbox.peek(1000)
            if e.channel is Channel.CMD_RESULT
        ]


@asynccontextmanager
async def updater_with(
    tmp_path: Path, current: ActionRecord | None, *, run: bool = True
) -> AsyncIterator[Updater]:
    """An updater whose state file holds ``current``; running (waiting for the night)."""
    directory = tmp_path / "firmware"
    FirmwareStateStore(directory).save(current)
    outbox = Outbox(tmp_path / "outbox.sqlite3", durable=False)
    updater = FirmwareUpdater(
        object(),  # no driver: nothing here may touch a terminal
        outbox,
        asyncio.Lock(),
        UpdaterConfig(directory=directory, trusted_keys=_no_keys, window_recheck_s=0.05),
        clock=lambda: NOW,
    )
    never: asyncio.Future[IncomingCommand] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(updater.run(lambda: never)) if run else None
    try:
        yield Updater(updater, outbox, directory)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        outbox.close()


def _no_keys() -> Any:
    raise AssertionError("a cancelled offer must be refused before its signature is checked")


def _cancel_command(action_id: str, command_id: str = "fwcancel-17-x") -> bytes:
    return json.dumps(
        {
            "id": command_id,
            "name": "firmware_cancel",
            "args": {"action_id": action_id},
            "issued_by": "user:olga",
            "issued_at": NOW.isoformat(),
            "expires_at": (NOW + timedelta(hours=1)).isoformat(),
        }
    ).encode()


async def test_a_waiting_update_is_stopped_its_files_deleted_and_its_end_published(
    tmp_path: Path,
) -> None:
    waiting = _record(UpdateState.WAITING_WINDOW, "17.2", progress=0.0)
    async with updater_with(tmp_path, waiting) as u:
        image = u.directory / f"{SHA}.img"
        image.write_bytes(b"x" * 1000)
        (u.directory / f"{SHA}.part").write_bytes(b"")
        await async_wait_for(lambda: u.updater._step is not None, description="step running")

        dispatcher = CommandDispatcher(object(), u.outbox, asyncio.Lock(), firmware=u.updater,
                                       clock=lambda: NOW)  # fmt: skip
        await dispatcher.handle(IncomingCommand(_cancel_command("17"), lambda: None))
        await dispatcher.handle(IncomingCommand(_cancel_command("17"), lambda: None))

        first, again = u.results()
        assert first == again  # run once per command id; a repeat gets the stored result
        assert first.status == "ok", first
        assert first.output["stopped"] is True and first.output["state"] == "waiting_window"
        final = u.statuses()[-1]
        assert (final.action_id, final.state) == ("17.2", UpdateState.REJECTED)
        assert final.detail == "cancelled by user:olga at the centre"
        assert u.updater.current is None
        assert not list(u.directory.glob(f"{SHA}.*"))
        assert u.updater.outcomes == {"rejected:cancelled": 1}
        # The worker goes on, idle, and takes the next action.
        assert u.updater._step is None

    on_disk = FirmwareStateStore(tmp_path / "firmware")
    assert on_disk.state.current is None
    assert on_disk.final_status("17.2") == final
    assert on_disk.cancelled_detail("17.3") == "cancelled by user:olga at the centre"


async def test_an_installing_update_is_not_stopped_and_the_command_says_why(
    tmp_path: Path,
) -> None:
    installing = _record(UpdateState.INSTALLING, "17.1", progress=0.4)
    async with updater_with(tmp_path, installing, run=False) as u:
        dispatcher = CommandDispatcher(object(), u.outbox, asyncio.Lock(), firmware=u.updater,
                                       clock=lambda: NOW)  # fmt: skip
        await dispatcher.handle(IncomingCommand(_cancel_command("17"), lambda: None))
        (result,) = u.results()
        assert result.status == "failed"
        assert result.error == "installing: cannot stop safely; it will finish or roll back"
        assert result.output["refused"] is True and result.output["state"] == "installing"
        assert u.updater.current == installing
        assert u.statuses() == []
        assert u.updater.store.cancelled_detail("17.1") is None


async def test_a_late_offer_of_a_cancelled_action_is_refused_before_anything_is_checked(
    tmp_path: Path,
) -> None:
    async with updater_with(tmp_path, None) as u:
        outcome = await u.updater.cancel("17", "user:olga")
        assert not outcome.stopped and outcome.state == ""
        acked: list[bool] = []
        payload = _offer("17.3").model_dump_json().encode()
        late = IncomingCommand(payload, lambda: acked.append(True))
        await u.updater.handle_offer(late)
        (status,) = u.statuses()
        assert (status.action_id, status.state) == ("17.3", UpdateState.REJECTED)
        assert status.detail == "cancelled by user:olga at the centre"
        assert acked == [True] and u.updater.current is None
        # Seen again (redelivered), it gets the same final status, nothing else.
        await u.updater.handle_offer(late)
        assert [s.detail for s in u.statuses()] == [status.detail, status.detail]


async def test_an_agent_without_an_updater_rejects_the_command(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", durable=False)
    try:
        dispatcher = CommandDispatcher(object(), outbox, asyncio.Lock(), clock=lambda: NOW)
        await dispatcher.handle(IncomingCommand(_cancel_command("17"), lambda: None))
        (entry,) = outbox.peek(10)
        result = CommandResult.model_validate_json(entry.payload)
        assert result.status == "rejected"
        assert result.error == "firmware_cancel: this agent runs no firmware updater"
        await dispatcher.handle(IncomingCommand(_cancel_command("", "bad-1"), lambda: None))
        bad = CommandResult.model_validate_json(outbox.peek(10)[-1].payload)
        assert bad.status == "rejected" and "invalid arguments" in (bad.error or "")
    finally:
        outbox.close()
