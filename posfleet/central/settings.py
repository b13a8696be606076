"""The central service's one settings object: ``POSFLEET_*`` environment and a TOML file."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from posfleet.central.errors import CentralError
from posfleet.diagnostics.runtime import DiagnosticsSettings
from posfleet.settings_files import BrokerClientSettings, load_settings


class SettingsError(CentralError):
    """The central configuration is invalid; the message says what to change."""


class CentralSettings(BrokerClientSettings):
    """Everything the central service needs: database, broker, web listener."""

    model_config = SettingsConfigDict(
        env_prefix="POSFLEET_", extra="forbid", env_nested_delimiter="__"
    )

    var_dir: Path = Field(default=Path("var"), description="state: database, secrets, artifacts")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in var_dir"
    )
    broker_username: str = "central"
    broker_password: SecretStr = SecretStr("")
    share_group: str | None = Field(
        default=None, description="MQTT v5 shared-subscription group for scale-out"
    )
    client_id: str = "posfleet-central"
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    diagnostics: DiagnosticsSettings = Field(
        default_factory=DiagnosticsSettings,
        description="rule files, webhooks, windows: a [diagnostics] table in the TOML file, "
        "or POSFLEET_DIAGNOSTICS__<NAME> in the environment",
    )
    # Telemetry (issue 4): SQL retention, and the optional InfluxDB-compatible sink.
    raw_retention_days: Annotated[int, Field(ge=1)] = 7
    rollup_retention_days: Annotated[int, Field(ge=1)] = 400
    heartbeat_sweep_s: Annotated[int, Field(ge=1, le=3600)] = 30
    ingest_writer: Literal["process", "inline"] = Field(
        default="process",
        description="validate and store in a writer process on another core (process), "
        "or on the service's own event loop (inline)",
    )
    ingest_batch_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1000, description="most messages stored per transaction"
    )
    ingest_queue_size: Annotated[int, Field(ge=1, le=65_535)] = Field(
        default=4000,
        description="messages received but not yet acknowledged (the broker's Receive Maximum)",
    )
    rollup_fold_interval_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0,
        description="how often stored samples are folded into the hourly rollups (seconds)",
    )
    influx_url: str | None = Field(
        default=None, description="InfluxDB v2 write API (InfluxDB, VictoriaMetrics); off if unset"
    )
    influx_token: SecretStr = SecretStr("")
    influx_org: str = "posfleet"
    influx_bucket: str = "posfleet"

    @model_validator(mode="after")
    def _rollups_outlive_raw_samples(self) -> CentralSettings:
        if self.rollup_retention_days < self.raw_retention_days:
            raise ValueError(
                f"rollup_retention_days ({self.rollup_retention_days}) must be at least "
                f"raw_retention_days ({self.raw_retention_days}): rollups replace raw samples"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """:attr:`database_url`, or the SQLite file under :attr:`var_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.var_dir / 'posfleet.db').resolve()}"

    def session_secret(self) -> bytes:
        """The key that signs dashboard sessions, created on first use in ``var_dir``."""
        path = self.var_dir / "session-secret"
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32), encoding="ascii")
        return bytes.fromhex(path.read_text(encoding="ascii").strip())


def load_central_settings(config_file: Path | None = None, **overrides: object) -> CentralSettings:
    """Load settings from ``config_file``, the environment and ``overrides``."""
    return load_settings(CentralSettings, config_file, SettingsError, **overrides)
