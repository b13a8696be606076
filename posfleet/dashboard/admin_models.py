"""Pydantic models of the admin API (``/api/v1/users``, ``/tokens``, ``/audit``): what the
handlers parse and answer, and what the OpenAPI document shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import pydantic

from posfleet.dashboard.json_bodies import validated_body
from posfleet.dashboard.paging_cursor import Cursor
from posfleet.dashboard.query_params import MAX_ROW_ID, MAX_TEXT_CHARS
from posfleet.store.accounts import MAX_PASSWORD_LENGTH, USERNAME_PATTERN, AuditEntry, Role, User
from posfleet.store.staff_accounts import ApiToken

RowId = Annotated[int, pydantic.Field(ge=1, le=MAX_ROW_ID)]
Reason = Annotated[
    str, pydantic.Field(min_length=1, max_length=500, description="Why: goes to the audit log.")
]
OptionalReason = Annotated[str, pydantic.Field(max_length=500)]
Password = Annotated[str, pydantic.Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
Text = Annotated[str, pydantic.Field(min_length=1, max_length=MAX_TEXT_CHARS)]


validated = validated_body
"""``raw`` as the model; a 400 naming the first bad field (the API's one reader)."""


class _Closed(pydantic.BaseModel):
    """Unknown fields are refused, so a typo never passes silently."""

    model_config = pydantic.ConfigDict(extra="forbid")


class NoQuery(_Closed):
    """No query parameters."""


class UserIdPath(_Closed):
    """``{user_id}`` in a path."""

    user_id: RowId


class TokenIdPath(_Closed):
    """``{token_id}`` in a path."""

    token_id: RowId


# ---- users ----------------------------------------------------------------------------


class UserOut(pydantic.BaseModel):
    """A staff user (never the password hash)."""

    id: int
    username: str
    role: Role
    created_at: datetime
    disabled: bool
    live_sessions: int = pydantic.Field(description="Browser sessions open now.")

    @classmethod
    def of(cls, user: User, live_sessions: int = 0) -> UserOut:
        """The answer for ``user``."""
        return cls(
            id=user.id,
            username=user.username,
            role=user.role,
            created_at=user.created_at,
            disabled=user.disabled,
            live_sessions=live_sessions,
        )


class UserList(pydantic.BaseModel):
    """Every staff user, by username."""

    items: list[UserOut]


class CreateUserBody(_Closed):
    """``POST /api/v1/users``."""

    username: Annotated[str, pydantic.Field(pattern=USERNAME_PATTERN)]
    role: Role
    password: Password = pydantic.Field(
        description="At least 12 characters, 5 of them different, not containing the username."
    )
    reason: OptionalReason = ""


class UpdateUserBody(_Closed):
    """``PATCH /api/v1/users/{user_id}``: a new role, disabled or enabled, or both."""

    role: Role | None = None
    disabled: bool | None = None
    reason: Reason


class PasswordBody(_Closed):
    """``POST /api/v1/users/{user_id}/password``: a new password; ends every session."""

    password: Password
    reason: Reason


class ReasonBody(_Closed):
    """A change that needs only its reason."""

    reason: Reason


class SessionsEnded(pydantic.BaseModel):
    """How many live sessions a change ended."""

    sessions_ended: int


# ---- tokens ---------------------------------------------------------------------------


class CreatedToken(ApiToken):
    """A new token, with the token itself: shown this once, stored only as a hash."""

    token: str


class TokenList(pydantic.BaseModel):
    """Every API token, live ones first."""

    items: list[ApiToken]


class CreateTokenBody(_Closed):
    """``POST /api/v1/tokens``."""

    name: Annotated[str, pydantic.Field(min_length=1, max_length=64)]
    role: Role
    reason: OptionalReason = ""


# ---- audit ----------------------------------------------------------------------------


class AuditQuery(_Closed):
    """``GET /api/v1/audit``: every filter given must hold; newest first."""

    actor: Text | None = pydantic.Field(None, description="Exactly, e.g. user:alice.")
    action: Text | None = pydantic.Field(
        None, description="Exactly, or ending in '.' as a prefix: rollout."
    )
    target: Text | None = pydantic.Field(None, description="The object, exactly: T-0001.")
    since: datetime | None = pydantic.Field(None, description="From this time on.")
    until: datetime | None = pydantic.Field(None, description="Before this time.")
    limit: Annotated[int, pydantic.Field(ge=1, le=500)] = 50
    before: Cursor | None = None

    @pydantic.field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A time without a zone is read as UTC, as the pages show times.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class AuditList(pydantic.BaseModel):
    """A page of audit lines; ``next`` is the ``before`` of the next (older) page."""

    items: list[AuditEntry]
    next: str | None
