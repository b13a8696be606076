"""Fault events a terminal reports the moment they happen."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from posfleet.contract.base import AwareDatetime, Seq, StrictModel
from posfleet.contract.vocabulary import Component, Severity

__all__ = [
    "Component",
    "FaultEvent",
    "Severity",
]


class FaultEvent(StrictModel):
    """Published on ``event`` when the terminal detects a fault."""

    seq: Seq = Field(description="per-terminal sequence number shared with health")
    ts: AwareDatetime
    code: Annotated[str, Field(pattern=r"^[a-z0-9_.]{1,64}$")] = Field(
        description="stable machine-readable fault code, e.g. printer.no_paper"
    )
    component: Component
    severity: Severity
    detail: Annotated[str, Field(max_length=1024)] = ""
    zvt_result_code: Annotated[int, Field(ge=0, le=255)] | None = Field(
        default=None, description="ZVT result code that raised it, when it came from ZVT"
    )
