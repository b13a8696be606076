"""Common base for the payload models of the contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from posfleet.contract.vocabulary import utcnow

__all__ = ["AwareDatetime", "Seq", "StrictModel", "utcnow"]


def _require_tz(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset (RFC 3339), e.g. 2026-01-31T12:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59-01:00 is a valid timestamp that UTC cannot hold.
        raise ValueError("timestamp is out of range once converted to UTC") from None


Seq = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A per-terminal sequence number; fits a signed 64-bit column."""

AwareDatetime = Annotated[datetime, AfterValidator(_require_tz)]
"""A timestamp with an explicit offset, normalised to UTC."""


class StrictModel(BaseModel):
    """A payload an agent produces: unknown fields are errors, models are immutable."""

    # allow_inf_nan: JSON has no NaN or Infinity; pydantic's parser would take them, and
    # they would go back out as null, so a payload would not mean what it said.
    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096, allow_inf_nan=False)
