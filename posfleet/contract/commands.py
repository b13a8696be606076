"""Remote commands (centre -> agent) and their results (agent -> centre)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from posfleet.contract.base import AwareDatetime, StrictModel

CommandId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class Command(StrictModel):
    """Published on ``cmd``. The agent runs only whitelisted names, once per id."""

    id: CommandId
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_by: Annotated[str, Field(min_length=1, max_length=128)]
    issued_at: AwareDatetime
    expires_at: AwareDatetime


class CommandStatus(StrEnum):
    """Final outcome of a command on the terminal."""

    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class CommandResult(StrictModel):
    """Published on ``cmd/result`` exactly once per command id."""

    id: CommandId
    status: CommandStatus
    output: dict[str, Any] = Field(default_factory=dict)
    error: Annotated[str, Field(max_length=2048)] | None = None
    ts: AwareDatetime
