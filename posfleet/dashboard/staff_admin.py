"""The admin's changes to staff users and API tokens, shared by the pages and the API.

Each change runs in one transaction with its audit line (who, what, which object, the
reason), and refuses what would lock everyone out: the last enabled admin can be neither
demoted nor disabled. Disabling a user, resetting their password or ending their
sessions ends those sessions on every dashboard instance at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.templating import _
from posfleet.store.accounts import (
    AccountError,
    InvalidUsernameError,
    Principal,
    Role,
    User,
    UserExistsError,
    WeakPasswordError,
    create_api_token,
    create_user,
    record_audit,
    revoke_api_token,
    set_user_disabled,
)
from posfleet.store.engine import write_transaction
from posfleet.store.sessions import SessionEnd, end_user_sessions
from posfleet.store.staff_accounts import (
    ApiToken,
    count_enabled_admins,
    find_api_token,
    find_user,
    reset_password,
    set_user_role,
    token_record,
)

MAX_REASON = 500


class AccountConflictError(RequestRejectedError):
    """A change that the accounts' present state forbids (a taken name, the last admin)."""

    status = 409
    code = "conflict"


def checked_reason(reason: str, *, required: bool = True) -> str:
    """The reason, trimmed; a 400 if it is missing where required, or too long."""
    reason = reason.strip()
    if required and not reason:
        raise InvalidParameterError("reason", _("say why: the reason goes to the audit log"))
    if len(reason) > MAX_REASON:
        raise InvalidParameterError("reason", _("the reason must be at most 500 characters"))
    return reason


@dataclass(frozen=True, slots=True)
class StaffAdmin:
    """The account changes, made by ``who`` (an admin; the routes require the role)."""

    engine: AsyncEngine
    who: Principal

    async def _user(self, conn: AsyncConnection, user_id: int) -> User:
        user = await find_user(conn, user_id)
        if user is None:
            raise NotFoundError(_("there is no such user"))
        return user

    async def _keep_an_admin(self, conn: AsyncConnection, user: User) -> None:
        last = user.role is Role.ADMIN and not user.disabled
        if last and await count_enabled_admins(conn, besides=user.id) == 0:
            raise AccountConflictError(
                _("this is the last enabled admin: make another admin first")
            )

    async def create_user(self, username: str, role: Role, password: str, reason: str) -> User:
        """A new user; 400 for a bad name or weak password, 409 if the name is taken."""
        reason = checked_reason(reason, required=False)
        async with write_transaction(self.engine) as conn:
            try:
                user = await create_user(conn, username, password, role)
            except InvalidUsernameError as exc:
                raise InvalidParameterError("username", str(exc)) from None
            except WeakPasswordError as exc:
                raise InvalidParameterError("password", str(exc)) from None
            except UserExistsError as exc:
                raise AccountConflictError(str(exc)) from None
            detail = {"role": role.value, "user_id": user.id}
            await record_audit(conn, self.who.actor, "user.add", username, detail, reason)
        return user

    async def change_role(self, user_id: int, role: Role, reason: str) -> User:
        """Give the user ``role``, effective on their next request."""
        reason = checked_reason(reason)
        async with write_transaction(self.engine) as conn:
            user = await self._user(conn, user_id)
            if role is not Role.ADMIN:
                await self._keep_an_admin(conn, user)
            await set_user_role(conn, user.id, role)
            detail = {"from": user.role.value, "to": role.value}
            await record_audit(conn, self.who.actor, "user.role", user.username, detail, reason)
        return User(user.id, user.username, role, user.created_at, user.disabled)

    async def set_disabled(self, user_id: int, disabled: bool, reason: str) -> User:
        """Disable (ending every session) or re-enable the user."""
        reason = checked_reason(reason)
        async with write_transaction(self.engine) as conn:
            user = await self._user(conn, user_id)
            if disabled:
                await self._keep_an_admin(conn, user)
            await set_user_disabled(conn, user.username, disabled)
            action = "user.disable" if disabled else "user.enable"
            await record_audit(conn, self.who.actor, action, user.username, {}, reason)
        return User(user.id, user.username, user.role, user.created_at, disabled)

    async def reset_password(self, user_id: int, password: str, reason: str) -> int:
        """Set a new password and end the user's sessions; how many were live."""
        reason = checked_reason(reason)
        async with write_transaction(self.engine) as conn:
            user = await self._user(conn, user_id)
            try:
                ended = await reset_password(conn, user, password)
            except WeakPasswordError as exc:
                raise InvalidParameterError("password", str(exc)) from None
            detail = {"sessions_ended": ended}
            await record_audit(
                conn, self.who.actor, "user.password_reset", user.username, detail, reason
            )
        return ended

    async def end_sessions(self, user_id: int, reason: str) -> int:
        """Log the user out everywhere; how many sessions were live."""
        reason = checked_reason(reason)
        async with write_transaction(self.engine) as conn:
            user = await self._user(conn, user_id)
            ended = await end_user_sessions(conn, user.id, utcnow(), SessionEnd.ENDED_BY_ADMIN)
            detail = {"sessions_ended": ended}
            await record_audit(
                conn, self.who.actor, "user.sessions_end", user.username, detail, reason
            )
        return ended

    async def create_token(self, name: str, role: Role, reason: str) -> tuple[ApiToken, str]:
        """A new API token: its record and the token itself, shown this once only."""
        reason = checked_reason(reason, required=False)
        async with write_transaction(self.engine) as conn:
            try:
                token = await create_api_token(conn, name.strip(), role)
            except AccountError as exc:
                raise InvalidParameterError("name", str(exc)) from None
            record = await token_record(conn, token)
            detail = {"role": role.value, "token_id": record.id}
            await record_audit(conn, self.who.actor, "token.create", record.name, detail, reason)
        return record, token

    async def revoke_token(self, token_id: int, reason: str) -> ApiToken:
        """Revoke the token for good; 404 if unknown, 409 if already revoked."""
        reason = checked_reason(reason)
        async with write_transaction(self.engine) as conn:
            record = await find_api_token(conn, token_id)
            if record is None:
                raise NotFoundError(_("there is no such API token"))
            if not await revoke_api_token(conn, token_id):
                raise AccountConflictError(_("this API token is already revoked"))
            detail = {"token_id": token_id}
            await record_audit(conn, self.who.actor, "token.revoke", record.name, detail, reason)
        return record.model_copy(update={"revoked": True})
