"""Telling a terminal that its firmware Action was cancelled: the ``firmware_cancel`` command.

Cancelling (the API, ``posfleet firmware cancel``, a rollout's abort) changes the store;
an agent that took the offer would still install when its window opens. So every
cancelled Action whose offer went out is told to its terminal with the whitelisted
command ``firmware_cancel`` ``{"action_id": "17"}`` on the terminal's ``cmd`` topic,
through the publisher the offers use:

- at once by an operator's cancel (:meth:`CancelNotices.tell`), and
- by the sweeper's rounds for every cancelled Action not told yet
  (:meth:`CancelNotices.tell_pending`): a cancel made from the shell without a broker, a
  rollout's abort (which cancels inside its own transaction), a broker that was away.

The command id is fixed per Action, so however often and by whichever central instance
it is sent, the agent runs it once. It expires at the Action's deadline: the agent does
not start an install after its offer expired anyway. The broker keeps it in an offline
terminal's persistent session until then. Sending never makes a cancel fail.

Each step is a line of the Action's history (``state`` of the event), and the agent's
answer on ``cmd/result`` is recorded there by :class:`CancelResultHandler`:

================  ===========  ===========================================================
``cancel_sent``   centre       the broker has the command (the terminal online or not)
``cancel_unsent`` centre       terminal not reached (broker away); tried again every round
``cancel_lapsed`` centre       not reached before the deadline; the terminal no longer installs
``cancel_done``   terminal     the agent stopped the update and deleted its download
``cancel_noop``   terminal     nothing of that Action was under way there
``cancel_refused`` terminal    it is installing: it finishes or rolls back by itself
``cancel_failed`` terminal     any other answer (an agent too old for the command, expired)
================  ===========  ===========================================================
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.contract import (
    FIRMWARE_CANCEL,
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    FirmwareCancelArgs,
    utcnow,
)
from posfleet.firmware.action_records import ActionRecord, action_query, get_action, record_of
from posfleet.firmware.action_states import ActionState
from posfleet.store.engine import write_transaction
from posfleet.store.schema import firmware_action_events, firmware_actions
from posfleet.store.terminals import get_terminal

log = logging.getLogger(__name__)

SENT = "cancel_sent"
UNSENT = "cancel_unsent"
LAPSED = "cancel_lapsed"
DONE = "cancel_done"
NOOP = "cancel_noop"
REFUSED = "cancel_refused"
FAILED = "cancel_failed"
SETTLED = frozenset({SENT, LAPSED, DONE, NOOP, REFUSED, FAILED})
"""History states after which the terminal needs telling no more."""

_COMMAND_ID = re.compile(r"^fwcancel-(\d{1,18})-[0-9a-f]{10}$")
_e = firmware_action_events.c
_a = firmware_actions.c


def cancel_command_id(action: ActionRecord) -> str:
    """The one command id of ``action``'s cancel (``fwcancel-17-<10 hex>``).

    The hash of the Action's terminal and creation time keeps it apart from an Action
    with the same number in another installation (a demo database made afresh).
    """
    seed = f"{action.id}|{action.terminal_id}|{action.created_at.isoformat()}"
    return f"fwcancel-{action.id}-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


def parse_cancel_command_id(command_id: str) -> int | None:
    """The Action a ``firmware_cancel`` command id is about; None for any other command."""
    match = _COMMAND_ID.match(command_id)
    return int(match.group(1)) if match else None


def cancel_command(action: ActionRecord, *, actor: str, now: datetime) -> Command:
    """The ``firmware_cancel`` command for ``action``, valid until its deadline."""
    return Command(
        id=cancel_command_id(action),
        name=FIRMWARE_CANCEL,
        args=FirmwareCancelArgs(action_id=str(action.id)).model_dump(),
        issued_by=actor[:128] or "system",
        issued_at=now,
        expires_at=max(action.deadline, now),
    )


def needs_telling(action: ActionRecord, now: datetime) -> str | None:
    """Why the terminal need not be told of ``action``'s cancel, or None if it must be."""
    if action.state is not ActionState.CANCELLED:
        return f"the action is {action.state}, not cancelled"
    if action.offered_at is None and action.attempts == 0:
        return "its offer never went out: the terminal knows nothing of it"
    if action.deadline <= now:
        return "it is past its deadline: the terminal does not start its install any more"
    return None


TELL_TIMEOUT_S = 5.0
"""Longest a cancel waits for the broker to take the command (the operator is waiting)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """What telling the terminal came to, in words for the operator."""

    sent: bool
    text: str
    unreached: bool = False
    """True if it had to be sent and the broker did not take it (tried again later)."""


class CancelNotices:
    """Sends the ``firmware_cancel`` commands and writes each outcome on the history."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Callable[[], Publisher | None],
        *,
        publish_timeout_s: float = TELL_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self._publisher = publisher
        self.publish_timeout_s = publish_timeout_s
        self.sent = 0
        self.unsent = 0

    async def tell(self, action: ActionRecord, *, actor: str) -> Notice:
        """Tell ``action``'s terminal it was cancelled by ``actor``; never raises for that."""
        now = utcnow()
        why_not = needs_telling(action, now)
        if why_not is not None:
            return Notice(False, f"the terminal is not told: {why_not}")
        command = cancel_command(action, actor=actor, now=now)
        publisher = self._publisher()
        try:
            if publisher is None:
                raise ConnectionError("no broker connection here")
            await publisher.publish(
                action.terminal_id, Channel.CMD, command, timeout_s=self.publish_timeout_s
            )
        # The publisher is a seam (MQTT, a fake): whatever it raises, the cancel stands
        # and the sweeper tries again.
        except Exception as exc:
            self.unsent += 1
            text = (
                f"terminal not reached: {exc or type(exc).__name__}; the central service "
                f"tries again every round until {action.deadline.isoformat()}"
            )
            log.warning("firmware cancel of action %d: %s", action.id, text)
            async with write_transaction(self.engine) as conn:
                if not await _has_event(conn, action.id, (UNSENT,)):
                    await _history(conn, action, UNSENT, text, command.id, now=utcnow())
            return Notice(False, text, unreached=True)
        self.sent += 1
        async with write_transaction(self.engine) as conn:
            terminal = await get_terminal(conn, action.terminal_id)
            if terminal is not None and terminal.online:
                text = "firmware_cancel sent to the terminal; its answer follows in the history"
            else:
                text = (
                    "firmware_cancel sent; the terminal is offline, the broker keeps it "
                    f"until {action.deadline.isoformat()} and the terminal answers when back"
                )
            # Sent twice (the sweeper racing an operator's cancel): one line is enough,
            # and the agent runs the command once anyway.
            if not await _has_event(conn, action.id, (SENT,)):
                await _history(conn, action, SENT, text, command.id, now=utcnow())
        return Notice(True, text)

    async def tell_pending(self, *, actor: str = "system", limit: int = 100) -> int:
        """Tell every cancelled Action's terminal not told yet; mark the hopeless lapsed.

        The command names who cancelled (from the history; ``actor`` if it does not say).
        Returns how many commands went out.
        """
        now = utcnow()
        async with self.engine.connect() as conn:
            pending = await _untold(conn, now=now, limit=limit)
            cancellers = {a.id: await _cancelled_by(conn, a.id) or actor for a in pending}
        sent = 0
        for action in pending:
            if action.deadline <= now:
                async with write_transaction(self.engine) as conn:
                    text = (
                        f"terminal not reached before the deadline {action.deadline.isoformat()}; "
                        "past it the terminal does not start the install"
                    )
                    await _history(conn, action, LAPSED, text, cancel_command_id(action), now=now)
                continue
            notice = await self.tell(action, actor=cancellers[action.id])
            if notice.unreached:
                break  # the broker is away: the others would wait in vain, next round
            sent += notice.sent
        return sent


async def _untold(conn: AsyncConnection, *, now: datetime, limit: int) -> list[ActionRecord]:
    """Cancelled Actions whose terminal is not told yet: those still within their deadline,
    and those past it after a failed try (to be marked lapsed)."""
    settled = sa.exists().where(_e.action_id == _a.id, _e.state.in_(sorted(SETTLED)))
    tried = sa.exists().where(_e.action_id == _a.id, _e.state == UNSENT)
    query = (
        action_query()
        .where(
            _a.state == ActionState.CANCELLED.value,
            sa.or_(_a.offered_at.is_not(None), _a.attempts > 0),
            ~settled,
            sa.or_(_a.deadline > now, tried),
        )
        .order_by(_a.id)
        .limit(limit)
    )
    return [record_of(row) for row in await conn.execute(query)]


async def _cancelled_by(conn: AsyncConnection, action_id: int) -> str | None:
    """Who cancelled the Action, as its history says (a user, a rollout's abort)."""
    actor: str | None = await conn.scalar(
        sa.select(_e.actor)
        .where(_e.action_id == action_id, _e.state == ActionState.CANCELLED.value)
        .order_by(_e.id)
        .limit(1)
    )
    return actor


async def _has_event(conn: AsyncConnection, action_id: int, states: Sequence[str]) -> bool:
    found = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(firmware_action_events)
        .where(_e.action_id == action_id, _e.state.in_(list(states)))
    )
    return bool(found)


async def _history(
    conn: AsyncConnection,
    action: ActionRecord,
    state: str,
    detail: str,
    command_id: str,
    *,
    now: datetime,
    source: str = "centre",
    actor: str = "system",
    reported_at: datetime | None = None,
) -> None:
    await conn.execute(
        sa.insert(firmware_action_events).values(
            action_id=action.id,
            ts=now,
            source=source,
            actor=actor,
            state=state,
            progress=None,
            detail=detail[:4000],
            reported_at=reported_at,
            applied=False,
            action_state=action.state.value,
            note=f"firmware_cancel {command_id}",
        )
    )


def answer_state(result: CommandResult) -> str:
    """The history state of the agent's answer to a ``firmware_cancel``."""
    if result.status is CommandStatus.OK:
        return DONE if result.output.get("stopped") is True else NOOP
    if result.status is CommandStatus.FAILED and result.output.get("refused") is True:
        return REFUSED
    return FAILED


def answer_detail(result: CommandResult) -> str:
    """The agent's own words, with the status when it is not ``ok``."""
    said = result.output.get("detail")
    text = said if isinstance(said, str) and said else (result.error or "")
    if result.status is CommandStatus.OK or answer_state(result) == REFUSED:
        return text or result.status.value
    return f"{result.status.value}: {text}" if text else result.status.value


@dataclass(frozen=True, slots=True)
class CancelResultHandler:
    """The ingest's ``cmd/result`` handler: a ``firmware_cancel`` answer onto its Action.

    Any other command's result is not the firmware's business: ``None`` (ignored). A
    redelivered answer is recognised (False); one about another terminal's Action is a
    dead letter (its reason).
    """

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: object, /, *, now: datetime
    ) -> bool | str | None:
        """Record ``payload`` (a :class:`CommandResult`) if it answers a cancel."""
        if not isinstance(payload, CommandResult):
            return f"cmd/result: expected a CommandResult, got {type(payload).__name__}"
        action_id = parse_cancel_command_id(payload.id)
        if action_id is None:
            return None
        action = await get_action(conn, action_id)
        if action is None or cancel_command_id(action) != payload.id:
            return f"cmd/result: {payload.id} answers no firmware action here"
        if action.terminal_id != terminal_id:
            return (
                f"cmd/result: {payload.id} is about terminal {action.terminal_id}'s action, "
                f"not {terminal_id}'s"
            )
        state = answer_state(payload)
        seen = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(firmware_action_events)
            .where(_e.action_id == action.id, _e.state == state, _e.reported_at == payload.ts)
        )
        if seen:
            return False
        await _history(
            conn,
            action,
            state,
            answer_detail(payload),
            payload.id,
            now=now,
            source="terminal",
            actor=f"terminal:{terminal_id}",
            reported_at=payload.ts,
        )
        return True
