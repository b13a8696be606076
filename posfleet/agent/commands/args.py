"""The arguments each whitelisted command takes, validated before anything runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from posfleet.contract import AwareDatetime

MAX_LOG_RANGE = timedelta(days=31)
"""Longest date range one ``collect_logs`` may ask for."""

MAX_RESTORE_PARAMS = 500


class NoArgs(BaseModel):
    """A command that takes no arguments: anything given is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PrintLineArgs(NoArgs):
    """``print_line``: one line of receipt text."""

    text: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


class CollectLogsArgs(NoArgs):
    """``collect_logs``: the half-open range ``[from, to)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")
    skip: Annotated[int, Field(ge=0, le=64 << 20)] = 0
    """Bytes of the range's newest log text already fetched (the previous part's
    ``next_skip``): a log too large for one message comes in parts, newest first."""

    @model_validator(mode="after")
    def _sane_range(self) -> CollectLogsArgs:
        if self.end <= self.start:
            raise ValueError("'to' must be after 'from'")
        if self.end - self.start > MAX_LOG_RANGE:
            raise ValueError(f"the range may span at most {MAX_LOG_RANGE.days} days")
        return self


ParamName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class RestoreConfigArgs(NoArgs):
    """``restore_config``: the parameters of a backup, name to value."""

    params: Annotated[
        dict[ParamName, Annotated[str, Field(max_length=1024)]],
        Field(min_length=1, max_length=MAX_RESTORE_PARAMS),
    ]
