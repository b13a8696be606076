"""Retained presence and identity of a terminal."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from posfleet.contract.base import AwareDatetime, StrictModel

Version = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+~-]+$")]


class State(StrictModel):
    """Published retained on ``state``: the birth message, and (offline) the LWT."""

    online: bool
    agent_version: Version
    boot_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="changes every time the agent starts"
    )
    ts: AwareDatetime


class Inventory(StrictModel):
    """Published retained on ``inventory`` at start and whenever it changes."""

    model: Annotated[str, Field(min_length=1, max_length=64)]
    serial: Annotated[str, Field(min_length=1, max_length=64)]
    hw_revision: Annotated[str, Field(max_length=32)] = ""
    firmware_version: Version
    app_versions: dict[Annotated[str, Field(max_length=64)], Version] = Field(default_factory=dict)
    agent_version: Version
    merchant_id: Annotated[str, Field(max_length=64)] = ""
    site_id: Annotated[str, Field(max_length=64)] = ""
    merchant_name: Annotated[str, Field(max_length=128)] = Field(
        default="", description="the merchant's trading name, as on its receipts (optional)"
    )
    site_name: Annotated[str, Field(max_length=128)] = Field(
        default="", description="the site (shop, branch) in words (optional)"
    )
    timezone: Annotated[str, Field(max_length=64)] = Field(
        default="UTC", description="IANA time zone of the terminal's site"
    )
    capabilities: list[Annotated[str, Field(max_length=32)]] = Field(default_factory=list)
    ts: AwareDatetime

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        # OSError: a folder of the zone database ("America") is no zone, but opening
        # it fails with IsADirectoryError when the tzdata package provides the zones.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value
