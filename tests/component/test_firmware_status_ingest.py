"""``fw/status`` through the ingest's batch path: stored on its Action, strays dead-lettered."""

from __future__ import annotations

import json
import pickle
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.ingest_batch import RawMessage, store_batch
from posfleet.contract import Channel, MaintenanceWindow, topic
from posfleet.firmware.action_records import get_action, list_events
from posfleet.firmware.action_states import ActionState
from posfleet.firmware.actions import create_action
from posfleet.firmware.status_ingest import UpdateStatusHandler
from posfleet.store import list_dead_letters, write_transaction
from tests.component.firmware_rows import T0, add_artifact, add_terminal, signed_manifest

HANDLERS = {Channel.FW_STATUS: UpdateStatusHandler()}


def _status(
    terminal_id: str, action_id: str, state: str, minute: int, **extra: object
) -> RawMessage:
    body = {
        "action_id": action_id,
        "state": state,
        "progress": extra.pop("progress", 0.0),
        "detail": extra.pop("detail", ""),
        "ts": (T0 + timedelta(minutes=minute)).isoformat(),
        **extra,
    }
    return RawMessage(topic(terminal_id, Channel.FW_STATUS), json.dumps(body).encode())


async def test_statuses_land_on_their_action_and_strays_become_counted_dead_letters(
    engine: AsyncEngine,
) -> None:
    await add_terminal(engine, "T-1")
    artifact = await add_artifact(engine, signed_manifest())
    async with write_transaction(engine) as conn:
        action = await create_action(
            conn,
            artifact_id=artifact.id,
            terminal_id="T-1",
            window=MaintenanceWindow(),
            deadline=T0 + timedelta(hours=4),
            created_by="user:olga",
            now=T0,
        )
    own = str(action.id)
    batch = [
        _status("T-1", own, "accepted", 1),
        _status("T-1", own, "downloading", 2, progress=0.25),
        _status("T-1", own, "downloading", 2, progress=0.25),  # redelivered
        _status("T-2", own, "succeeded", 3),  # someone else's action
        _status("T-1", "424242", "accepted", 3),  # no such action
        _status("T-1", own, "exploded", 3),  # not a state of the contract
        _status("T-1", own, "installing", 4, progress=0.9),
    ]
    async with write_transaction(engine) as conn:
        outcome = await store_batch(conn, batch, now=T0 + timedelta(minutes=5), handlers=HANDLERS)
    assert len(outcome.stored) == 3
    assert outcome.duplicates == 1
    assert outcome.dead_lettered == 3

    async with engine.connect() as conn:
        stored = await get_action(conn, action.id)
        history = await list_events(conn, action.id)
        letters = await list_dead_letters(conn)
    assert stored is not None and stored.state is ActionState.INSTALLING
    assert stored.progress == 0.9
    assert [e.state for e in history if e.source == "terminal"] == [
        "accepted",
        "downloading",
        "installing",
    ]
    errors = sorted(letter.error for letter in letters)
    assert any(f"action {own} belongs to terminal T-1, not T-2" in e for e in errors), errors
    assert any("no firmware action '424242'" in e for e in errors), errors
    assert any(e.startswith("state: ") for e in errors), errors


def test_the_handler_travels_to_the_store_writer_process_by_pickle() -> None:
    handler = UpdateStatusHandler()
    assert pickle.loads(pickle.dumps(handler)) == handler
