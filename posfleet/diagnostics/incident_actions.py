"""What staff do to an incident: acknowledge, assign, annotate, escalate, resolve.

Each action is one transaction that takes a step of the incident's lifecycle
(:mod:`posfleet.diagnostics.incident_lifecycle` decides whether it may, and what it
changes), appends to the audit log (who, what, when, why) and sends the notification the
step names (escalation and resolution).
Assignment and escalation also leave a note on the incident's timeline.
The API handlers and the CLI both call these.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.diagnostics.errors import IncidentNotFoundError, IncidentTransitionError
from posfleet.diagnostics.incident_lifecycle import (
    Decision,
    Refusal,
    Transition,
    acknowledge,
    assign,
    escalate,
    note_text,
    resolve_by_staff,
)
from posfleet.diagnostics.incident_recorder import Notifier, write_transition
from posfleet.diagnostics.rule_model import Escalation
from posfleet.store.accounts import record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import IncidentRecord, add_note, get_incident

# -- timeline text (the notes an action leaves) -----------------------------------------
_ASSIGNED = "assigned to {assignee}"
_UNASSIGNED = "unassigned"
_ESCALATED = "escalated to {to}"


class IncidentActions:
    """Staff actions over one database, notifying ``notifier`` where it matters."""

    def __init__(self, engine: AsyncEngine, notifier: Notifier | None = None) -> None:
        self._engine = engine
        self._notifier = notifier

    async def acknowledge(self, incident_id: int, *, actor: str) -> IncidentRecord:
        """Take the incident: open -> acknowledged."""
        async with write_transaction(self._engine) as conn:
            step = partial(acknowledge, by=actor, now=utcnow())
            record, _ = await change_incident(conn, incident_id, step)
            await record_audit(conn, actor, "incident.acknowledge", _target(incident_id))
            return record

    async def resolve(
        self, incident_id: int, *, actor: str, resolution: str = ""
    ) -> IncidentRecord:
        """Close the incident by hand, saying how it was fixed."""
        async with write_transaction(self._engine) as conn:
            step = partial(resolve_by_staff, by=actor, resolution=resolution, now=utcnow())
            record, transition = await change_incident(conn, incident_id, step)
            await record_audit(
                conn, actor, "incident.resolve", _target(incident_id), reason=resolution
            )
        self._notify(transition, record)
        return record

    async def assign(self, incident_id: int, assignee: str | None, *, actor: str) -> IncidentRecord:
        """Give the incident to a staff member (None: nobody)."""
        async with write_transaction(self._engine) as conn:
            now = utcnow()
            await change_incident(conn, incident_id, partial(assign, assignee=assignee, now=now))
            await add_note(
                conn,
                incident_id,
                author=actor,
                kind="assignment",
                text=_ASSIGNED.format(assignee=assignee) if assignee else _UNASSIGNED,
                detail={"assignee": assignee},
                now=now,
            )
            await record_audit(
                conn, actor, "incident.assign", _target(incident_id), {"assignee": assignee}
            )
            return await _existing(conn, incident_id)

    async def note(self, incident_id: int, text: str, *, actor: str) -> IncidentRecord:
        """Add a note to the timeline (a call with the merchant, what was tried)."""
        kept = note_text(text)
        if isinstance(kept, Refusal):
            raise IncidentTransitionError(kept.reason)
        async with write_transaction(self._engine) as conn:
            await _existing(conn, incident_id)
            await add_note(conn, incident_id, author=actor, text=kept, now=utcnow())
            await record_audit(conn, actor, "incident.note", _target(incident_id))
            return await _existing(conn, incident_id)

    async def link_command(
        self,
        incident_id: int,
        command_id: str,
        name: str,
        *,
        actor: str,
        at: datetime | None = None,
    ) -> None:
        """Record on the timeline that a remote command was sent for this incident."""
        async with write_transaction(self._engine) as conn:
            await _existing(conn, incident_id)
            await add_note(
                conn,
                incident_id,
                author=actor,
                kind="command",
                text=f"sent {name}",
                detail={"command_id": command_id, "name": name},
                now=at or utcnow(),
            )

    async def escalate(
        self, incident_id: int, to: Escalation, *, actor: str, reason: str = ""
    ) -> IncidentRecord:
        """Send the problem on: an on-site visit or a swap (or back to a remote fix)."""
        async with write_transaction(self._engine) as conn:
            now = utcnow()
            _, transition = await change_incident(
                conn, incident_id, partial(escalate, to=to, now=now)
            )
            await add_note(
                conn,
                incident_id,
                author=actor,
                kind="escalation",
                text=reason.strip() or _ESCALATED.format(to=to.value),
                detail={"to": to.value, "reason": reason.strip()},
                now=now,
            )
            await record_audit(
                conn, actor, "incident.escalate", _target(incident_id), {"to": to.value}, reason
            )
            record = await _existing(conn, incident_id)
        self._notify(transition, record)
        return record

    def _notify(self, transition: Transition, record: IncidentRecord) -> None:
        if transition.notify is not None and self._notifier is not None:
            self._notifier.notify(transition.notify, record)


async def change_incident(
    conn: AsyncConnection, incident_id: int, decide: Callable[[IncidentRecord], Decision]
) -> tuple[IncidentRecord, Transition]:
    """Take one lifecycle step on an incident, in the caller's transaction.

    Reads the incident, asks ``decide`` (a step of
    :mod:`~posfleet.diagnostics.incident_lifecycle` with its arguments bound) and writes
    its answer, guarded by the states the step is allowed from. Returns the incident as
    it is now and the step taken. Raises :class:`IncidentNotFoundError`, or
    :class:`IncidentTransitionError` with the lifecycle's reason for refusing.
    """
    # A second look only when the incident changed between the read and the write.
    for _look in range(2):
        current = await _existing(conn, incident_id)
        decision = decide(current)
        if isinstance(decision, Refusal):
            raise IncidentTransitionError(decision.reason)
        if await write_transition(conn, decision):
            return await _existing(conn, incident_id), decision
    raise IncidentTransitionError(f"incident #{incident_id} changed meanwhile; try again")


async def _existing(conn: AsyncConnection, incident_id: int) -> IncidentRecord:
    record = await get_incident(conn, incident_id)
    if record is None:
        raise IncidentNotFoundError(incident_id)
    return record


def _target(incident_id: int) -> str:
    return f"incident:{incident_id}"
