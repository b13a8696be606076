"""The central service's one settings object: ``POSFLEET_*`` environment and a TOML file."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from posfleet.broker_bridge.partition import Partition, check_one_split
from posfleet.central.errors import CentralError
from posfleet.diagnostics.runtime import DiagnosticsSettings
from posfleet.firmware.settings import FirmwareSettings
from posfleet.settings_files import BrokerClientSettings, load_settings
from posfleet.tls_contexts import TlsFiles


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
        default=None,
        description="MQTT v5 shared-subscription group for scale-out, on a broker that "
        "routes it by client id (EMQX hash_clientid); on Mosquitto use partition",
    )
    partition: str | None = Field(
        default=None,
        description="K/N: this instance serves the K-th of N shares of the terminals "
        "(by a hash of the terminal id); every instance sets its own K and the same N",
    )
    client_id: Annotated[str, Field(min_length=1, max_length=96)] = Field(
        default="posfleet-central",
        description="prefix of the MQTT client ids; each instance adds a random suffix, "
        "kept in var_dir (mqtt-client-suffix), so nobody can guess its ids",
    )
    # TLS (issue 17): the broker link over mqtts://, and the dashboard's own listener.
    broker_tls_ca_file: Path | None = Field(
        default=None, description="CA of the broker's certificate (mqtts://; default: system CAs)"
    )
    broker_tls_cert_file: Path | None = Field(
        default=None, description="client certificate, if the broker asks for one"
    )
    broker_tls_key_file: Path | None = None
    dashboard_tls_cert: Path | None = Field(
        default=None, description="serve the dashboard over https with this certificate (PEM)"
    )
    dashboard_tls_key: Path | None = None
    dashboard_behind_tls_proxy: bool = Field(
        default=False,
        description="a TLS-terminating proxy is in front: send HSTS and Secure cookies",
    )
    dashboard_trusted_proxies: list[IPvAnyNetwork] = Field(
        default=[],
        description="proxies whose X-Forwarded-For names the client (login throttle)",
    )
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    diagnostics: DiagnosticsSettings = Field(
        default_factory=DiagnosticsSettings,
        description="rule files, webhooks, windows: a [diagnostics] table in the TOML file, "
        "or POSFLEET_DIAGNOSTICS__<NAME> in the environment",
    )
    firmware: FirmwareSettings = Field(
        default_factory=FirmwareSettings,
        description="release keys, download tokens, bandwidth caps: a [firmware] table, "
        "or POSFLEET_FIRMWARE__<NAME> in the environment",
    )
    # Telemetry (issue 4): SQL retention, and the optional InfluxDB-compatible sink.
    raw_retention_days: Annotated[int, Field(ge=1)] = 7
    rollup_retention_days: Annotated[int, Field(ge=1)] = 400
    heartbeat_sweep_s: Annotated[int, Field(ge=1, le=3600)] = 30
    ingest_writer: Literal["process", "inline"] = Field(
        default="process",
        description="store validated batches in a writer process on another core "
        "(process), or on the service's own event loop (inline)",
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
    # Rollouts (issue 12): the runner every instance runs.
    rollout_interval_s: Annotated[float, Field(gt=0, le=300)] = Field(
        default=5.0, description="how often the rollout runner advances rollouts (seconds)"
    )
    rollout_lease_s: Annotated[float, Field(ge=1, le=3600)] = Field(
        default=60.0,
        description="how long an instance holds a rollout; another takes over after a crash "
        "once it ran out (seconds)",
    )
    rollout_joiner_scan_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0, description="how often a rollout looks for terminals that start matching"
    )
    config_backup_period_h: Annotated[float, Field(gt=0, le=24 * 90)] = Field(
        default=24.0, description="how often each online terminal's configuration is backed up"
    )
    config_backup_interval_s: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=300.0, description="time between two rounds of scheduled backups"
    )
    config_backup_budget: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=50, description="at most this many terminals asked for a backup per round"
    )
    # Reports (issue 16): the scheduled summary, sent to the diagnostics webhooks.
    report_summary: Literal["off", "daily", "weekly"] = Field(
        default="off", description="send the last day's or week's report summary to the webhooks"
    )
    report_summary_hour_utc: Annotated[int, Field(ge=0, le=23)] = Field(
        default=6, description="the UTC hour from which the last period's summary is sent"
    )

    @model_validator(mode="after")
    def _one_way_to_split_the_fleet(self) -> CentralSettings:
        # Here too, not only in BrokerConnection: a bad setting is a SettingsError at load.
        check_one_split(self.share_group, self.partition)
        return self

    @property
    def share(self) -> Partition | None:
        """The partition of the fleet this instance serves, if any."""
        return None if self.partition is None else Partition.parse(self.partition)

    @model_validator(mode="after")
    def _rollups_outlive_raw_samples(self) -> CentralSettings:
        if self.rollup_retention_days < self.raw_retention_days:
            raise ValueError(
                f"rollup_retention_days ({self.rollup_retention_days}) must be at least "
                f"raw_retention_days ({self.raw_retention_days}): rollups replace raw samples"
            )
        return self

    @model_validator(mode="after")
    def _tls_pairs(self) -> CentralSettings:
        if (self.dashboard_tls_cert is None) != (self.dashboard_tls_key is None):
            raise ValueError("dashboard_tls_cert and dashboard_tls_key go together: set both")
        if (self.broker_tls_cert_file is None) != (self.broker_tls_key_file is None):
            raise ValueError("broker_tls_cert_file and broker_tls_key_file go together")
        uses_tls_files = self.broker_tls_ca_file or self.broker_tls_cert_file
        if uses_tls_files and not self.broker_url.startswith("mqtts://"):
            raise ValueError("broker TLS files are set but broker_url is not mqtts://")
        return self

    @property
    def broker_tls(self) -> TlsFiles | None:
        """The broker link's TLS files when :attr:`broker_url` is ``mqtts://``, else None."""
        if not self.broker_url.startswith("mqtts://"):
            return None
        return TlsFiles(
            self.broker_tls_ca_file, self.broker_tls_cert_file, self.broker_tls_key_file
        )

    @property
    def dashboard_scheme(self) -> str:
        """``https`` when the dashboard serves TLS itself, else ``http``."""
        return "https" if self.dashboard_tls_cert is not None else "http"

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

    def download_token_secret(self) -> bytes:
        """The key of firmware download tokens: configured, or created once in ``var_dir``."""
        configured = self.firmware.download_token_secret
        if configured is not None:
            return bytes.fromhex(configured.get_secret_value())
        path = self.var_dir / "firmware-token-secret"
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32), encoding="ascii")
        return bytes.fromhex(path.read_text(encoding="ascii").strip())

    def mqtt_client_id(self) -> str:
        """This instance's MQTT client id: :attr:`client_id`, a dash and a random suffix.

        The suffix is created once per ``var_dir`` and kept there, so a restart resumes
        the broker session (and the messages queued for it) while no terminal can guess
        the id. Two instances need two ``var_dir``; a shared subscription joins them.
        """
        path = self.var_dir / "mqtt-client-suffix"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(8))
        suffix = path.read_text(encoding="ascii").strip()
        if not re.fullmatch(r"[0-9a-f]{16}", suffix):
            raise SettingsError(f"{path} does not hold a client id suffix; delete it")
        return f"{self.client_id}-{suffix}"

    @property
    def artifacts_dir(self) -> Path:
        """The content-addressed firmware blobs: ``var_dir/artifacts/<sha256>``."""
        return self.var_dir / "artifacts"

    @property
    def firmware_base_url(self) -> str:
        """Where terminals download firmware from: ``firmware.public_base_url`` or the listener."""
        listener = f"{self.dashboard_scheme}://{self.http_host}:{self.http_port}"
        return self.firmware.public_base_url or listener


def load_central_settings(config_file: Path | None = None, **overrides: object) -> CentralSettings:
    """Load settings from ``config_file``, the environment and ``overrides``."""
    return load_settings(CentralSettings, config_file, SettingsError, **overrides)
