"""Staff actions on cases: open, note, link, follow up, assign, change state.

Each action is one write transaction: it reads the case, asks
:mod:`posfleet.helpdesk.case_machine` what changes, stores it, appends the case's
timeline and writes the audit log (who, what, which case, why). The dashboard's pages
and API and the CLI all go through :class:`CaseDesk`, so they behave alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import ContractError, utcnow, validate_terminal_id
from posfleet.helpdesk.case_machine import responded, state_change
from posfleet.helpdesk.errors import (
    CaseInputError,
    CaseNotFoundError,
    CaseTransitionError,
    LinkTargetNotFoundError,
)
from posfleet.store.accounts import record_audit
from posfleet.store.cases import (
    CaseDraft,
    CaseLinkKind,
    CaseRecord,
    CaseState,
    add_case_link,
    add_case_note,
    get_case,
    insert_case,
    update_case,
)
from posfleet.store.engine import write_transaction
from posfleet.store.schema import incidents, playbook_runs, terminal_commands

MAX_NOTE = 4000
MAX_TERMINALS = 20
_LIMITS = {
    "merchant_id": 64,
    "subject": 200,
    "complaint": MAX_NOTE,
    "caller_name": 128,
    "caller_phone": 64,
}


def check_draft(draft: CaseDraft) -> CaseDraft:
    """``draft`` with its texts trimmed; :class:`CaseInputError` naming a bad field."""
    trimmed: dict[str, Any] = {}
    for name, limit in _LIMITS.items():
        value = str(getattr(draft, name)).strip()
        if len(value) > limit:
            raise CaseInputError(name, f"{name} must be at most {limit} characters long")
        if name in ("merchant_id", "subject", "complaint") and not value:
            raise CaseInputError(name, f"give the {name.replace('_', ' ')}")
        trimmed[name] = value
    if len(draft.terminal_ids) > MAX_TERMINALS:
        raise CaseInputError("terminal_ids", f"a case names at most {MAX_TERMINALS} terminals")
    for terminal_id in draft.terminal_ids:
        try:
            validate_terminal_id(terminal_id)
        except ContractError:
            raise CaseInputError(
                "terminal_ids", f"{terminal_id[:70]!r} is not a terminal id"
            ) from None
    if draft.assignee is not None and not 0 < len(draft.assignee) <= 128:
        raise CaseInputError("assignee", "assignee must be a user name of at most 128 characters")
    return CaseDraft(**{**_fields(draft), **trimmed})


def _fields(draft: CaseDraft) -> dict[str, Any]:
    return {name: getattr(draft, name) for name in CaseDraft.__dataclass_fields__}


def _target(case_id: int) -> str:
    return f"case:{case_id}"


async def _link_target_exists(conn: AsyncConnection, kind: CaseLinkKind, ref: str) -> bool:
    if kind is CaseLinkKind.COMMAND:
        query = sa.select(terminal_commands.c.id).where(terminal_commands.c.id == ref)
    else:
        if not (ref.isascii() and ref.isdigit() and len(ref) <= 18):
            return False
        table = incidents if kind is CaseLinkKind.INCIDENT else playbook_runs
        query = sa.select(table.c.id).where(table.c.id == int(ref))
    return (await conn.execute(query)).first() is not None


class CaseDesk:
    """The staff actions on cases, over one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _live(self, conn: AsyncConnection, case_id: int) -> CaseRecord:
        case = await get_case(conn, case_id)
        if case is None:
            raise CaseNotFoundError(case_id)
        return case

    async def _changed(
        self,
        conn: AsyncConnection,
        case: CaseRecord,
        values: Mapping[str, Any],
        *,
        actor: str,
        kind: str,
        text: str,
        detail: Mapping[str, Any],
        expected: CaseState | None = None,
    ) -> CaseRecord:
        if not await update_case(conn, case.id, values, expected_state=expected):
            raise CaseTransitionError(f"case #{case.id} changed meanwhile; look again")
        now = values["updated_at"]
        await add_case_note(
            conn, case.id, author=actor, kind=kind, text=text, now=now, detail=detail
        )
        await record_audit(conn, actor, f"case.{kind}", _target(case.id), detail, text)
        return await self._live(conn, case.id)

    async def open(self, draft: CaseDraft, *, actor: str) -> CaseRecord:
        """Open a case for a merchant's call; the new case."""
        draft = check_draft(draft)
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            case_id = await insert_case(conn, draft, opened_by=actor, now=now)
            detail = {"merchant_id": draft.merchant_id, "terminal_ids": list(draft.terminal_ids)}
            await add_case_note(
                conn,
                case_id,
                author=actor,
                kind="opened",
                text=draft.subject,
                now=now,
                detail={**detail, "channel": draft.channel.value},
            )
            await record_audit(conn, actor, "case.open", _target(case_id), detail, draft.subject)
            return await self._live(conn, case_id)

    async def change_state(
        self,
        case_id: int,
        target: CaseState,
        *,
        actor: str,
        reason: str = "",
        confirmation: str = "",
    ) -> CaseRecord:
        """Move the case to ``target``; closing needs the merchant's ``confirmation``."""
        async with write_transaction(self.engine) as conn:
            case = await self._live(conn, case_id)
            values = state_change(
                case, target, reason=reason, confirmation=confirmation, now=utcnow()
            )
            said = reason.strip() or confirmation.strip()
            detail = {"from": case.state.value, "to": target.value}
            if target is CaseState.CLOSED:
                detail["confirmation"] = confirmation.strip()
            return await self._changed(
                conn,
                case,
                values,
                actor=actor,
                kind="state",
                text=said,
                detail=detail,
                expected=case.state,
            )

    async def add_note(self, case_id: int, text: str, *, actor: str) -> CaseRecord:
        """Add a staff note (closed cases too: what was learnt afterwards)."""
        body = text.strip()
        if not body or len(body) > MAX_NOTE:
            raise CaseInputError("text", f"a note is 1 to {MAX_NOTE} characters long")
        async with write_transaction(self.engine) as conn:
            case = await self._live(conn, case_id)
            now = utcnow()
            values = {"updated_at": now, **responded(case, now)}
            return await self._changed(
                conn, case, values, actor=actor, kind="note", text=body, detail={}
            )

    def _refuse_closed(self, case: CaseRecord, what: str) -> None:
        if case.state is CaseState.CLOSED:
            raise CaseTransitionError(f"case #{case.id} is closed: it takes no {what}")

    async def set_follow_up(
        self, case_id: int, on: date | None, *, actor: str, note: str = ""
    ) -> CaseRecord:
        """Set (or, with None, clear) the day to follow the case up, with a short note."""
        what = note.strip()
        if len(what) > 200:
            raise CaseInputError("follow_up_note", "the follow-up note is at most 200 characters")
        async with write_transaction(self.engine) as conn:
            case = await self._live(conn, case_id)
            self._refuse_closed(case, "follow-up")
            now = utcnow()
            values = {"follow_up_on": on, "follow_up_note": what, "updated_at": now}
            values.update(responded(case, now))
            detail = {"follow_up_on": on.isoformat() if on else None}
            return await self._changed(
                conn, case, values, actor=actor, kind="follow_up", text=what, detail=detail
            )

    async def assign(self, case_id: int, assignee: str | None, *, actor: str) -> CaseRecord:
        """Give the case to ``assignee`` (None: nobody)."""
        if assignee is not None and not 0 < len(assignee) <= 128:
            raise CaseInputError(
                "assignee", "assignee must be a user name of at most 128 characters"
            )
        async with write_transaction(self.engine) as conn:
            case = await self._live(conn, case_id)
            self._refuse_closed(case, "assignment")
            values = {"assignee": assignee, "updated_at": utcnow()}
            detail = {"from": case.assignee, "to": assignee}
            return await self._changed(
                conn, case, values, actor=actor, kind="assign", text="", detail=detail
            )

    async def link(
        self, case_id: int, kind: CaseLinkKind, ref: str, *, actor: str
    ) -> tuple[CaseRecord, bool]:
        """Link an incident, command or playbook run; the case and whether it is new."""
        ref = ref.strip().removeprefix("#")
        if not 0 < len(ref) <= 64:
            raise CaseInputError("ref", "give the id of what to link (at most 64 characters)")
        async with write_transaction(self.engine) as conn:
            case = await self._live(conn, case_id)
            self._refuse_closed(case, "new links")
            if not await _link_target_exists(conn, kind, ref):
                raise LinkTargetNotFoundError(kind.value, ref)
            now = utcnow()
            if not await add_case_link(conn, case_id, kind, ref, linked_by=actor, now=now):
                return case, False
            values = {"updated_at": now, **responded(case, now)}
            detail = {"kind": kind.value, "ref": ref}
            changed = await self._changed(
                conn, case, values, actor=actor, kind="link", text="", detail=detail
            )
            return changed, True
