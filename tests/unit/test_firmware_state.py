"""The updater's state survives a restart, and a restart decides from it and the slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from posfleet.agent.drivers.base import FirmwareSlot, FirmwareSlots
from posfleet.agent.firmware_install import Next, reconcile
from posfleet.agent.firmware_state import ActionRecord, FirmwareStateStore
from posfleet.contract import (
    FirmwareManifest,
    FirmwareOffer,
    MaintenanceWindow,
    SignedManifest,
    UpdateState,
    UpdateStatus,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SHA = "ab" * 32
A, B = FirmwareSlot.A, FirmwareSlot.B


def _offer(action_id: str = "A-1") -> FirmwareOffer:
    manifest = FirmwareManifest(
        name="pos-os", version="2.5.0", sha256=SHA, size=1000, models=["PF-M100"]
    )
    return FirmwareOffer(
        action_id=action_id,
        signed_manifest=SignedManifest(manifest=manifest, key_id="k", signature="A" * 86 + "=="),
        url="http://fw/x",
        token="t" * 32,
        window=MaintenanceWindow(),
        expires_at=NOW + timedelta(days=1),
    )


def _final(action_id: str, state: UpdateState = UpdateState.SUCCEEDED) -> UpdateStatus:
    return UpdateStatus(action_id=action_id, state=state, detail="done", ts=NOW)


def test_the_current_action_and_past_finals_survive_a_restart(tmp_path: Path) -> None:
    store = FirmwareStateStore(tmp_path)
    record = ActionRecord(offer=_offer(), state=UpdateState.INSTALLING, install_attempts=1,
                          previous_slot=A, previous_version="2.4.1")  # fmt: skip
    store.save(record)
    store.finish_other(_final("OLD-1", UpdateState.REJECTED))

    again = FirmwareStateStore(tmp_path)
    assert again.state.current == record
    assert again.final_status("OLD-1") == _final("OLD-1", UpdateState.REJECTED)
    assert again.final_status("A-1") is None

    again.finish(_final("A-1"))
    third = FirmwareStateStore(tmp_path)
    assert third.state.current is None and third.final_status("A-1") == _final("A-1")
    assert not list(tmp_path.glob("*.tmp"))


def test_the_history_of_finished_actions_is_bounded(tmp_path: Path) -> None:
    store = FirmwareStateStore(tmp_path, history=3)
    for n in range(5):
        store.finish_other(_final(f"A-{n}"))
    assert [s.action_id for s in FirmwareStateStore(tmp_path).state.finished] == [
        "A-2",
        "A-3",
        "A-4",
    ]


def test_a_corrupt_state_file_is_moved_aside_and_counted(tmp_path: Path) -> None:
    (tmp_path / "updater.json").write_text('{"current": {"state": "bogus"')
    store = FirmwareStateStore(tmp_path)
    assert store.state.current is None and store.corrupt_files == 1
    assert (tmp_path / "updater.json.corrupt").exists()


def test_image_files_of_other_images_are_cleaned_up(tmp_path: Path) -> None:
    store = FirmwareStateStore(tmp_path)
    keep, old = "11" * 32, "22" * 32
    for path in (store.partial_path(keep), store.image_path(old), store.partial_path(old)):
        path.write_bytes(b"x")
    assert sorted(store.remove_stale_images(keep)) == sorted([f"{old}.img", f"{old}.part"])
    assert store.partial_path(keep).exists()


def _slots(
    active: FirmwareSlot, *, pending: bool = False, b: str = "2.5.0", why: str = ""
) -> FirmwareSlots:
    return FirmwareSlots(active, {A: "2.4.1", B: b}, pending, why)


def _record(**changes: object) -> ActionRecord:
    record = ActionRecord(offer=_offer(), state=UpdateState.INSTALLING, previous_slot=A)
    return record.model_copy(update=changes)


ACTIVATED = {"target_slot": B, "activated_at": NOW, "state": UpdateState.REBOOTING}


@pytest.mark.parametrize(
    ("record", "slots", "expected"),
    [
        # Killed while writing blocks: the terminal still runs A, nothing was activated.
        (_record(), _slots(A, b=""), Next.INSTALL),
        # Killed after the activation was written down but before it was sent.
        (_record(**ACTIVATED), _slots(A, b=""), Next.INSTALL),
        # Killed during the health window: B on trial, watch it again.
        (_record(**ACTIVATED), _slots(B, pending=True), Next.WATCH),
        # Activation happened but was never written down.
        (_record(target_slot=B), _slots(B, pending=True), Next.WATCH),
        # Confirmed just before the restart.
        (_record(**ACTIVATED), _slots(B), Next.SUCCEEDED),
        # The terminal rolled back on its own while the agent was away.
        (_record(**ACTIVATED), _slots(A, why="new image failed to boot 3 times"), Next.ROLLED_BACK),
        # The updater decided to roll back and the terminal did.
        (_record(**ACTIVATED, rollback_reason="critical fault x"), _slots(A), Next.ROLLED_BACK),
        # A trial slot nothing vouches for (another version on trial).
        (_record(), _slots(B, pending=True, b="9.9.9"), Next.ROLL_BACK),
    ],
)
def test_reconcile_picks_up_an_install_from_the_record_and_the_slots(
    record: ActionRecord, slots: FirmwareSlots, expected: Next
) -> None:
    assert reconcile(record, slots, "2.5.0").next is expected


def test_a_rollback_reason_says_who_rolled_back() -> None:
    by_terminal = reconcile(_record(**ACTIVATED), _slots(A, why="failed to boot"), "2.5.0")
    assert by_terminal.reason == "the terminal rolled back on its own: failed to boot"
    old_rollback = _record(**ACTIVATED, rollback_before="failed to boot")
    assert reconcile(old_rollback, _slots(A, why="failed to boot"), "2.5.0").next is Next.INSTALL
