"""The fleet file: which simulated terminals to run and their broker credentials.

Written by ``posfleet broker provision-fleet`` (and by the demo), read by
``posfleet simulate``. It holds plain passwords, so it is created with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from posfleet.contract import TERMINAL_ID_PATTERN


class FleetTerminal(BaseModel):
    """One simulated terminal."""

    model_config = ConfigDict(extra="forbid")

    terminal_id: Annotated[str, Field(pattern=TERMINAL_ID_PATTERN)]
    password: str
    merchant_id: str = ""
    site_id: str = ""
    merchant_name: str = ""
    site_name: str = ""
    timezone: str = "UTC"
    seed: int = 0


class FleetFile(BaseModel):
    """A broker URL and the terminals to simulate against it."""

    model_config = ConfigDict(extra="forbid")

    broker_url: str
    terminals: list[FleetTerminal]
    firmware_trusted_keys: dict[str, Path] = Field(
        default_factory=dict,
        description="release keys every simulated agent trusts for firmware: key id -> "
        "PEM public key file (none: every offer is refused as not trusted)",
    )


class FleetFileError(ValueError):
    """The fleet file is missing or invalid."""


def load_fleet_file(path: Path) -> FleetFile:
    """Read and validate a fleet file."""
    try:
        return FleetFile.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise FleetFileError(f"fleet file {path} does not exist") from None
    except ValidationError as exc:
        raise FleetFileError(f"fleet file {path} is invalid: {exc}") from None


def write_fleet_file(path: Path, fleet: FleetFile) -> Path:
    """Write ``fleet`` to ``path`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(fleet.model_dump_json(indent=2))
    os.replace(tmp, path)
    return path
