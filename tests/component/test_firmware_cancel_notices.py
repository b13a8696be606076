"""A cancelled Action's terminal is told (``firmware_cancel`` on its ``cmd`` topic), over the
real store with the in-memory publisher: at once by an operator's cancel, by the
sweeper for a rollout's abort or after the broker was away, never for an Action whose
offer never went out; and the agent's answer lands on the Action's history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import (
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    UpdateState,
    UpdateStatus,
    utcnow,
)
from posfleet.firmware.action_records import ActionEvent, ActionRecord, get_action, list_events
from posfleet.firmware.action_states import ActionState, RetryPolicy
from posfleet.firmware.actions import cancel_action, record_status
from posfleet.firmware.cancel_notices import CancelResultHandler, cancel_command_id
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.offers import FirmwareOffers, PushRequest
from posfleet.store import write_transaction
from posfleet.store.schema import firmware_actions
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest


@pytest.fixture
async def offers(engine: AsyncEngine) -> AsyncIterator[tuple[FirmwareOffers, MemoryPublisher]]:
    publisher = MemoryPublisher()
    service = FirmwareOffers(
        engine, DownloadTokens(b"k" * 32), base_url="https://fleet.example.com", publisher=publisher
    )
    await add_artifact(engine, signed_manifest("5.3.0"))
    yield service, publisher


async def _pushed(service: FirmwareOffers, *terminals: str) -> list[ActionRecord]:
    result = await service.push(PushRequest("pos-os@5.3.0", list(terminals)), actor="user:olga")
    assert result.offered == len(terminals)
    return result.created


def _cancels(publisher: MemoryPublisher) -> list[tuple[str, Command]]:
    return [
        (tid, payload)
        for tid, channel, payload in publisher.sent
        if channel is Channel.CMD and isinstance(payload, Command)
    ]


async def _history(engine: AsyncEngine, action_id: int) -> list[ActionEvent]:
    async with engine.connect() as conn:
        return await list_events(conn, action_id)


def _lines(events: list[ActionEvent]) -> list[tuple[str, str]]:
    return [(e.source, e.state) for e in events if e.state.startswith("cancel_")]


async def test_an_operators_cancel_tells_the_terminal_at_once(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await add_terminal(engine, "T-ON")
    await add_terminal(engine, "T-AWAY", online=False)
    on, away = await _pushed(service, "T-ON", "T-AWAY")

    done = await service.cancel_and_tell(on.id, actor="user:olga", reason="wrong shop")
    assert done.action.state is ActionState.CANCELLED
    assert done.notice.sent
    assert done.notice.text == (
        "firmware_cancel sent to the terminal; its answer follows in the history"
    )
    [(terminal_id, command)] = _cancels(publisher)
    assert terminal_id == "T-ON" and command.name == "firmware_cancel"
    assert command.args == {"action_id": str(on.id)}
    assert command.issued_by == "user:olga" and command.expires_at == on.deadline
    assert command.id == cancel_command_id(done.action)
    assert _lines(await _history(engine, on.id)) == [("centre", "cancel_sent")]

    # An offline terminal: the broker keeps the command for its session, until the deadline.
    later = await service.cancel_and_tell(away.id, actor="user:olga")
    assert later.notice.sent and "the terminal is offline, the broker keeps it until" in (
        later.notice.text
    )
    assert [tid for tid, _ in _cancels(publisher)] == ["T-ON", "T-AWAY"]
    # Told already: the sweeper's round sends nothing more.
    assert await service.notices.tell_pending() == 0
    assert len(_cancels(publisher)) == 2


async def test_a_broker_that_is_away_does_not_fail_the_cancel_and_the_sweeper_tells_later(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await add_terminal(engine, "T-1")
    [action] = await _pushed(service, "T-1")
    publisher.failing = True

    done = await service.cancel_and_tell(action.id, actor="user:olga")
    assert done.action.state is ActionState.CANCELLED  # the cancel stands
    assert not done.notice.sent
    assert done.notice.text.startswith("terminal not reached: the in-memory broker is away; ")
    assert "tries again every round until" in done.notice.text
    assert await service.notices.tell_pending() == 0  # still away: one history line only
    events = await _history(engine, action.id)
    assert _lines(events) == [("centre", "cancel_unsent")]
    assert events[-1].detail == done.notice.text

    publisher.failing = False
    assert await service.notices.tell_pending() == 1
    [(_, command)] = _cancels(publisher)
    assert command.issued_by == "user:olga"  # who cancelled, from the history
    assert _lines(await _history(engine, action.id)) == [
        ("centre", "cancel_unsent"),
        ("centre", "cancel_sent"),
    ]
    assert await service.notices.tell_pending() == 0


async def test_a_cancel_made_inside_another_transaction_is_told_by_the_sweepers_round(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    # A rollout's abort cancels with cancel_action in its own transaction.
    service, publisher = offers
    await add_terminal(engine, "T-1")
    await add_terminal(engine, "T-2")
    first, second = await _pushed(service, "T-1", "T-2")
    async with write_transaction(engine) as conn:
        for action in (first, second):
            await cancel_action(conn, action.id, actor="rollout:4", now=utcnow(), reason="abort")
    assert _cancels(publisher) == []
    # The broker away: the round stops at the first, the other waits for the next round.
    publisher.failing = True
    assert await service.notices.tell_pending() == 0
    assert [_lines(await _history(engine, a.id)) for a in (first, second)] == [
        [("centre", "cancel_unsent")],
        [],
    ]
    publisher.failing = False
    assert await service.notices.tell_pending() == 2
    assert {(tid, c.issued_by) for tid, c in _cancels(publisher)} == {
        ("T-1", "rollout:4"),
        ("T-2", "rollout:4"),
    }


async def test_an_action_whose_offer_never_went_out_is_not_told_and_a_late_one_lapses(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, publisher = offers
    await add_terminal(engine, "T-1")
    await add_terminal(engine, "T-2")
    publisher.failing = True
    created = await service.push(PushRequest("pos-os@5.3.0", ["T-1"]), actor="user:olga")
    [never] = created.created
    done = await service.cancel_and_tell(never.id, actor="user:olga")
    assert done.notice.text == (
        "the terminal is not told: its offer never went out: the terminal knows nothing of it"
    )
    assert _lines(await _history(engine, never.id)) == []

    # Offered, cancelled while the broker is away, and it never comes back in time.
    publisher.failing = False
    short = await service.push(
        PushRequest("pos-os@5.3.0", ["T-2"], deadline=timedelta(seconds=5)), actor="user:olga"
    )
    [action] = short.created
    publisher.failing = True
    await service.cancel_and_tell(action.id, actor="user:olga")
    async with write_transaction(engine) as conn:
        await conn.execute(
            firmware_actions.update()
            .where(firmware_actions.c.id == action.id)
            .values(deadline=utcnow() - timedelta(seconds=1))
        )
    publisher.failing = False
    assert await service.notices.tell_pending() == 0
    events = await _history(engine, action.id)
    assert _lines(events) == [("centre", "cancel_unsent"), ("centre", "cancel_lapsed")]
    assert "past it the terminal does not start the install" in events[-1].detail
    assert await service.notices.tell_pending() == 0
    assert _cancels(publisher) == []


def _answer(command_id: str, status: CommandStatus, **output: Any) -> CommandResult:
    error = output.pop("error", None)
    return CommandResult(id=command_id, status=status, output=output, error=error, ts=utcnow())


async def test_the_agents_answers_are_recorded_on_the_history_once_and_reopen_nothing(
    engine: AsyncEngine, offers: tuple[FirmwareOffers, MemoryPublisher]
) -> None:
    service, _ = offers
    await add_terminal(engine, "T-1")
    await add_terminal(engine, "T-2")
    stopped, busy = await _pushed(service, "T-1", "T-2")
    stopped = (await service.cancel_and_tell(stopped.id, actor="user:olga")).action
    busy = (await service.cancel_and_tell(busy.id, actor="user:olga")).action
    handler = CancelResultHandler()
    done = _answer(
        cancel_command_id(stopped),
        CommandStatus.OK,
        stopped=True,
        refused=False,
        state="waiting_window",
        detail=f"stopped {stopped.id}.1 while waiting_window: cancelled by user:olga at the "
        "centre; the downloaded image was deleted",
    )
    refused = _answer(
        cancel_command_id(busy),
        CommandStatus.FAILED,
        stopped=False,
        refused=True,
        state="installing",
        detail="installing: cannot stop safely; it will finish or roll back",
        error="installing: cannot stop safely; it will finish or roll back",
    )
    other = _answer("c1-abcdef", CommandStatus.OK)
    async with write_transaction(engine) as conn:
        assert await handler(conn, "T-1", done, now=utcnow()) is True
        assert await handler(conn, "T-1", done, now=utcnow()) is False  # redelivered
        assert await handler(conn, "T-2", refused, now=utcnow()) is True
        assert await handler(conn, "T-2", other, now=utcnow()) is None  # not a cancel
        wrong = await handler(conn, "T-2", done, now=utcnow())
        assert isinstance(wrong, str) and "not T-2's" in wrong
        # The agent's final status of the dropped update: recorded, not applied.
        late = UpdateStatus(
            action_id=f"{stopped.id}.1",
            state=UpdateState.REJECTED,
            detail="cancelled by user:olga at the centre",
            ts=utcnow(),
        )
        await record_status(conn, "T-1", late, now=utcnow(), policy=RetryPolicy())

    events = await _history(engine, stopped.id)
    assert _lines(events) == [("centre", "cancel_sent"), ("terminal", "cancel_done")]
    answer = next(e for e in events if e.state == "cancel_done")
    assert answer.actor == "terminal:T-1" and answer.detail == done.output["detail"]
    last = events[-1]
    assert (last.state, last.applied) == ("rejected", False)
    assert last.note == "late: the action is already cancelled"
    busy_events = await _history(engine, busy.id)
    refusal = next(e for e in busy_events if e.state == "cancel_refused")
    assert refusal.detail == "installing: cannot stop safely; it will finish or roll back"
    async with engine.connect() as conn:
        for action in (stopped, busy):
            shown = await get_action(conn, action.id)
            assert shown is not None and shown.state is ActionState.CANCELLED
