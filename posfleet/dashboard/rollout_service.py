"""The rollout operations as the API, the page and the local CLI use them.

One place that parses a request (:mod:`posfleet.dashboard.rollout_body`), calls one store
function of :mod:`posfleet.firmware.rollouts` as a given actor and role, and turns the
domain's refusals into the dashboard's (:class:`RequestRejectedError` with the status
the API answers): unknown rollout 404, a role or the four-eyes rule 403 (audited, by the
store's :func:`~posfleet.firmware.rollouts.run_command`, or here for a create), a state
that does not allow the command 409, a bad field 400 naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import (
    ForbiddenError,
    InvalidParameterError,
    NotFoundError,
    RequestRejectedError,
)
from posfleet.dashboard.rollout_body import BodyInvalidError, CommandBody, CreateBody
from posfleet.firmware.errors import ArtifactError
from posfleet.firmware.rollout_machine import RolloutTransitionError
from posfleet.firmware.rollout_model import RolloutPolicyError, RolloutState
from posfleet.firmware.rollout_records import RolloutPreview, RolloutRecord
from posfleet.firmware.rollout_runner import RolloutRunner
from posfleet.firmware.rollouts import (
    RolloutNotFoundError,
    RolloutPermissionError,
    create_rollout,
    get_rollout,
    list_rollouts,
    preview_rollout,
    run_command,
)
from posfleet.store.accounts import Role, record_audit
from posfleet.store.engine import write_transaction

COMMANDS = ("request_approval", "approve", "start", "pause", "resume", "abort", "rollback")
"""The commands that steer a rollout, each with a reason code and text."""
PREVIEW_ROWS_PER_WAVE = 100
"""Terminals listed per wave in a preview answer (the counts cover every terminal)."""
WAKING = frozenset({"start", "resume", "rollback"})
"""Commands after which the runner should look at once rather than at its next round."""

ROLLOUT_RUNNER_KEY = web.AppKey("rollout_runner", RolloutRunner)
"""Optional: this instance's runner, woken after a start, resume or roll back so the
first offers go out at once (without it they go out at the next round, seconds later)."""


class RolloutConflictProblem(RequestRejectedError):
    """The rollout's state does not allow the command, or it changed meanwhile."""

    status = 409
    code = "conflict"


class RolloutForbiddenProblem(ForbiddenError):
    """The role or the four-eyes rule refused the command; the refusal is audited."""

    code = "rollout_forbidden"


def _field_of(exc: RolloutPolicyError) -> str:
    return {"reason_text": "reason"}.get(exc.field, exc.field or "body")


def rejected(exc: Exception, *, field: str = "artifact") -> RequestRejectedError:
    """The dashboard's refusal for a domain error of a rollout operation; ``field`` names
    the body field an unknown or unusable artifact came from."""
    if isinstance(exc, RolloutNotFoundError):
        return NotFoundError(str(exc))
    if isinstance(exc, RolloutPermissionError):
        return RolloutForbiddenProblem(str(exc))
    if isinstance(exc, RolloutTransitionError):
        return RolloutConflictProblem(str(exc))
    if isinstance(exc, RolloutPolicyError):
        return BodyInvalidError([(_field_of(exc), str(exc))])
    if isinstance(exc, ArtifactError):
        return BodyInvalidError([(field, str(exc))])
    raise exc


_DOMAIN_ERRORS = (
    RolloutNotFoundError,
    RolloutPermissionError,
    RolloutTransitionError,
    RolloutPolicyError,
    ArtifactError,
)


def parse_states(text: str | None) -> list[RolloutState]:
    """``running,paused`` as states; InvalidParameterError naming the known ones."""
    states = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        try:
            states.append(RolloutState(part))
        except ValueError:
            known = ", ".join(s.value for s in RolloutState)
            raise InvalidParameterError("state", f"state is one of {known}") from None
    return states


def preview_json(
    rollout: RolloutRecord, preview: RolloutPreview, *, per_wave: int = PREVIEW_ROWS_PER_WAVE
) -> dict[str, Any]:
    """The preview answer: the rollout, counts per wave and the first terminals of each."""
    body = preview.to_json(limit=None)
    shown: dict[int, int] = {}
    rows = []
    for row in body["rows"]:
        seen = shown.get(row["wave"], 0)
        if seen < per_wave:
            rows.append(row)
            shown[row["wave"]] = seen + 1
    body["rows"] = rows
    body["excluded"] = body["excluded"][: max(per_wave, 0) * 10]
    body["excluded_total"] = len(preview.excluded)
    body["warnings"] = list(rollout.policy.warnings())
    return {"rollout": rollout.to_json(), **body}


class RolloutService:
    """The rollout operations on behalf of one actor with one role."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        actor: str,
        role: Role,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.role = role
        self.wake = wake

    @classmethod
    def for_request(cls, app: web.Application, *, actor: str, role: Role) -> RolloutService:
        """The operations in ``app``, waking its runner if it has one."""
        runner = app.get(ROLLOUT_RUNNER_KEY)
        wake = runner.wake if runner is not None else None
        return cls(app[ENGINE_KEY], actor=actor, role=role, wake=wake)

    async def create(self, data: Any) -> RolloutRecord:
        """A draft from a ``POST /api/v1/rollouts`` body (audited; a refusal too)."""
        draft = CreateBody.parse(data)
        try:
            async with write_transaction(self.engine) as conn:
                return await create_rollout(
                    conn,
                    name=draft.name,
                    artifact=draft.artifact,
                    rollback_artifact=draft.rollback_artifact,
                    target=draft.target,
                    policy=draft.policy,
                    actor=self.actor,
                    actor_role=self.role,
                    reason_code=draft.reason_code.value,
                    reason_text=draft.reason,
                )
        except RolloutPermissionError as exc:
            await self._audit_refusal("create", None, str(exc), draft.reason)
            raise rejected(exc) from None
        except _DOMAIN_ERRORS as exc:
            raise rejected(exc) from None

    async def _audit_refusal(
        self, command: str, rollout_id: int | None, why: str, reason: str
    ) -> None:
        async with write_transaction(self.engine) as conn:
            await record_audit(
                conn,
                self.actor,
                f"rollout.{command}.refused",
                f"rollout:{rollout_id}" if rollout_id is not None else "rollout",
                {"role": self.role.value, "why": why},
                reason,
            )

    async def preview(
        self, rollout_id: int, *, store: bool = True, now: datetime | None = None
    ) -> tuple[RolloutRecord, RolloutPreview]:
        """The dry run on today's fleet. ``store``: a draft becomes previewed (by this
        actor); without it a draft is refused (409), since reading must not move it."""
        now = now or utcnow()
        try:
            if store:
                async with write_transaction(self.engine) as conn:
                    preview = await preview_rollout(conn, rollout_id, now=now, actor=self.actor)
                    record = await get_rollout(conn, rollout_id)
                return record, preview
            async with self.engine.connect() as conn:
                record = await get_rollout(conn, rollout_id)
                if record.state is RolloutState.DRAFT:
                    raise RolloutConflictProblem(
                        f"rollout #{rollout_id} is a draft: preview it first "
                        f"(POST /api/v1/rollouts/{rollout_id}/preview)"
                    )
                return record, await preview_rollout(conn, rollout_id, now=now)
        except _DOMAIN_ERRORS as exc:
            raise rejected(exc) from None

    async def command(self, rollout_id: int, command: str, data: Any) -> RolloutRecord:
        """Steer the rollout: ``command`` with the body's reason (audited; a refusal too)."""
        if command not in COMMANDS:
            raise NotFoundError(f"no rollout command {command!r}; known: {', '.join(COMMANDS)}")
        body = CommandBody.parse(data)
        options: dict[str, Any] = {}
        if body.rollback_artifact is not None:
            if command != "rollback":
                raise BodyInvalidError(
                    [("rollback_artifact", "only a rollback takes a rollback artifact")]
                )
            options["rollback_artifact"] = str(body.rollback_artifact)
        try:
            moved = await run_command(
                self.engine,
                command,
                rollout_id,
                actor=self.actor,
                actor_role=self.role,
                reason_code=body.reason_code.value,
                reason_text=body.reason,
                **options,
            )
        except _DOMAIN_ERRORS as exc:
            raise rejected(exc, field="rollback_artifact") from None
        if command in WAKING and self.wake is not None:
            self.wake()
        return moved

    async def list(
        self,
        *,
        states: Sequence[RolloutState] = (),
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[RolloutRecord]:
        """Rollouts newest first, with their waves and counts."""
        async with self.engine.connect() as conn:
            return await list_rollouts(
                conn, states=list(states) or None, limit=limit, before_id=before_id
            )

    async def get(self, rollout_id: int) -> RolloutRecord:
        """One rollout with its waves, gate figures and history."""
        try:
            async with self.engine.connect() as conn:
                return await get_rollout(conn, rollout_id)
        except _DOMAIN_ERRORS as exc:
            raise rejected(exc) from None
