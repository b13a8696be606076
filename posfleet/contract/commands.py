"""Remote commands (centre -> agent) and their results (agent -> centre)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from posfleet.contract.base import AwareDatetime, StrictModel
from posfleet.contract.vocabulary import CommandStatus

__all__ = [
    "FIRMWARE_CANCEL",
    "ActionId",
    "Command",
    "CommandId",
    "CommandResult",
    "CommandStatus",
    "FirmwareCancelArgs",
    "JsonObject",
    "offer_belongs_to",
]

CommandId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _finite_numbers(value: dict[str, Any]) -> dict[str, Any]:
    # A free-form object escapes allow_inf_nan: check its numbers here, at any depth.
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and infinite numbers are not JSON")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_numbers)]
"""Free-form arguments or output: any JSON object (finite numbers only)."""


class Command(StrictModel):
    """Published on ``cmd``. The agent runs only whitelisted names, once per id."""

    id: CommandId
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    args: JsonObject = Field(default_factory=dict)
    issued_by: Annotated[str, Field(min_length=1, max_length=128)]
    issued_at: AwareDatetime
    expires_at: AwareDatetime


class CommandResult(StrictModel):
    """Published on ``cmd/result`` exactly once per command id."""

    id: CommandId
    status: CommandStatus
    output: JsonObject = Field(default_factory=dict)
    error: Annotated[str, Field(max_length=2048)] | None = None
    ts: AwareDatetime


FIRMWARE_CANCEL = "firmware_cancel"
"""The command that tells an agent an Action was cancelled at the centre."""

ActionId = Annotated[str, Field(min_length=1, max_length=64)]


class FirmwareCancelArgs(StrictModel):
    """``firmware_cancel``'s arguments: the Action, as the centre numbers it (``17``)."""

    action_id: ActionId


def offer_belongs_to(offer_action_id: str, action_id: str) -> bool:
    """True if an offer's ``action_id`` is an attempt of the Action ``action_id``.

    Each attempt of an Action goes out with an id of its own, ``<id>.<attempt>``
    (``17.1``, ``17.2``); a bare ``17`` names the Action itself. A cancel of ``17``
    therefore covers every offer ``17`` or ``17.<digits>``, and nothing else (``170.1``).
    """
    if offer_action_id == action_id:
        return True
    head, dot, attempt = offer_action_id.rpartition(".")
    return bool(dot) and head == action_id and attempt.isascii() and attempt.isdigit()
