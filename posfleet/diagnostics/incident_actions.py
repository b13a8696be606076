"""What staff do to an incident: acknowledge, assign, annotate, escalate, resolve.

Each action is one transaction that changes the incident, appends to the audit log
(who, what, when, why) and, for escalation and resolution, notifies the webhooks.
Assignment and escalation also leave a note on the incident's timeline.
The API handlers and the CLI both call these.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.diagnostics.errors import IncidentNotFoundError, IncidentTransitionError
from posfleet.diagnostics.incident_recorder import Notifier
from posfleet.diagnostics.rule_model import Escalation
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.accounts import record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import (
    IncidentRecord,
    IncidentState,
    acknowledge_incident,
    add_note,
    assign_incident,
    escalate_incident,
    get_incident,
    resolve_incident,
)

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
            current = await _existing(conn, incident_id)
            if not await acknowledge_incident(conn, incident_id, by=actor, now=utcnow()):
                raise IncidentTransitionError(
                    f"incident #{incident_id} is {current.state}; "
                    "only an open one can be acknowledged"
                )
            await record_audit(conn, actor, "incident.acknowledge", _target(incident_id))
            return await _existing(conn, incident_id)

    async def resolve(
        self, incident_id: int, *, actor: str, resolution: str = ""
    ) -> IncidentRecord:
        """Close the incident by hand, saying how it was fixed."""
        async with write_transaction(self._engine) as conn:
            current = await _existing(conn, incident_id)
            now = utcnow()
            if not await resolve_incident(
                conn, incident_id, by=actor, now=now, resolution=resolution
            ):
                raise IncidentTransitionError(f"incident #{incident_id} is already {current.state}")
            await record_audit(
                conn, actor, "incident.resolve", _target(incident_id), reason=resolution
            )
            record = await _existing(conn, incident_id)
        self._notify(NotificationEvent.RESOLVED, record)
        return record

    async def assign(self, incident_id: int, assignee: str | None, *, actor: str) -> IncidentRecord:
        """Give the incident to a staff member (None: nobody)."""
        async with write_transaction(self._engine) as conn:
            await _existing(conn, incident_id)
            now = utcnow()
            await assign_incident(conn, incident_id, assignee, now=now)
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
        if not text.strip():
            raise IncidentTransitionError("a note needs some text")
        async with write_transaction(self._engine) as conn:
            await _existing(conn, incident_id)
            await add_note(conn, incident_id, author=actor, text=text.strip(), now=utcnow())
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
            current = await _existing(conn, incident_id)
            if current.state is IncidentState.RESOLVED:
                raise IncidentTransitionError(f"incident #{incident_id} is resolved")
            now = utcnow()
            await escalate_incident(conn, incident_id, to.value, now=now)
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
        self._notify(NotificationEvent.ESCALATED, record)
        return record

    def _notify(self, event: NotificationEvent, record: IncidentRecord) -> None:
        if self._notifier is not None:
            self._notifier.notify(event, record)


async def _existing(conn: AsyncConnection, incident_id: int) -> IncidentRecord:
    record = await get_incident(conn, incident_id)
    if record is None:
        raise IncidentNotFoundError(incident_id)
    return record


def _target(incident_id: int) -> str:
    return f"incident:{incident_id}"
