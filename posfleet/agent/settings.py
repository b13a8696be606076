"""The agent's one settings object: TOML file plus ``POSFLEET_AGENT_*`` environment.

A plain pydantic model read by :func:`~posfleet.settings_plain.load_plain_settings`, not
pydantic-settings (6.5 MB less on the terminal). ``AgentSettings(...)`` takes exactly what
it is given; :func:`load_agent_settings` adds the file and the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from posfleet.agent.drivers.zvt_tcp import is_zvt_tcp_url, parse_zvt_tcp_url
from posfleet.agent.errors import ConfigError
from posfleet.contract import validate_terminal_id
from posfleet.settings_plain import BrokerClientFields, load_plain_settings

if TYPE_CHECKING:
    from posfleet.firmware.signing import TrustedKeys

DEFAULT_CONFIG_FILE = Path("/etc/posfleet/agent.toml")


ENV_PREFIX = "POSFLEET_AGENT_"


class AgentSettings(BrokerClientFields):
    """Everything the agent daemon needs to know; invalid combinations fail at load time."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    terminal_id: str = Field(description="this terminal's id, also its MQTT username")
    username: str | None = Field(default=None, description="defaults to the terminal id")
    password: SecretStr = SecretStr("")
    tls_ca_file: Path | None = Field(
        default=None, description="CA that signed the broker's certificate (mqtts://)"
    )
    tls_cert_file: Path | None = Field(
        default=None, description="this terminal's client certificate, if the broker asks"
    )
    tls_key_file: Path | None = Field(default=None, description="the client certificate's key")
    keepalive_s: Annotated[int, Field(ge=2, le=3600)] = 60
    reconnect_min_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    serial_url: str = Field(
        description="device path, pty, socket://host:port or rfc2217://; "
        "zvt+tcp://host[:port] for ZVT over TCP/IP (unframed APDUs, port 20007 by default)"
    )
    baudrate: int = 9600
    driver: str = Field(default="maintenance", pattern=r"^(maintenance|zvt)$")
    reply_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    zvt_passthrough_ecr_url: str | None = Field(
        default=None,
        description="ZVT pass-through: the port the cash register is wired to (device path or "
        "pty); the agent forwards between it and the terminal on serial_url",
    )
    zvt_passthrough_idle_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    """Pass-through: how long the link must be quiet before the agent polls the terminal."""

    health_interval_s: Annotated[int, Field(ge=1, le=86400)] = 60
    fault_poll_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    state_dir: Path = Path("/var/lib/posfleet-agent")
    outbox_max_entries: Annotated[int, Field(ge=10)] = 50_000
    command_history: Annotated[int, Field(ge=10, le=1_000_000)] = 1000

    firmware_trusted_keys: dict[str, Path] = Field(
        default_factory=dict,
        description="release keys allowed to sign firmware: key id -> PEM public key file "
        "(two at once while a key is rotated)",
    )
    firmware_revoked_key_ids: list[str] = Field(
        default_factory=list, description="key ids refused even if a key file is listed"
    )
    firmware_health_window_s: Annotated[float, Field(gt=0, le=1500)] = 300.0
    """How long a new slot must run without a critical fault before it is confirmed
    (below the terminal's own 30 min confirm timeout)."""
    firmware_boot_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    firmware_health_poll_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    firmware_busy_retry_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    firmware_window_recheck_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    firmware_download_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    firmware_download_max_attempts: Annotated[int, Field(ge=1, le=10_000)] = 30
    firmware_retry_min_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    firmware_retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    firmware_ca_file: Path | None = Field(
        default=None, description="CA bundle for an https download URL (default: system CAs)"
    )

    site_id: str = ""
    timezone: str = "UTC"
    merchant_name: Annotated[str, Field(max_length=128)] = ""
    """The merchant's trading name for the inventory (when the terminal does not say)."""
    site_name: Annotated[str, Field(max_length=128)] = ""

    @field_validator("terminal_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return validate_terminal_id(value)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {value!r} is not an IANA time zone name") from None
        return value

    @field_validator("firmware_trusted_keys")
    @classmethod
    def _readable_firmware_keys(cls, value: dict[str, Path]) -> dict[str, Path]:
        for key_id, path in value.items():
            if not key_id.strip() or len(key_id) > 64:
                raise ValueError(f"firmware key id {key_id!r} must be 1 to 64 characters")
            # The key is parsed when the first offer comes (the signature code costs the
            # agent megabytes of memory); here the file must be there and look like one.
            try:
                head = path.read_bytes()[:4096]
            except OSError as exc:
                raise ValueError(
                    f"firmware key {key_id!r}: cannot read {path}: {exc.strerror or exc}"
                ) from None
            if b"-----BEGIN PUBLIC KEY-----" not in head:
                raise ValueError(
                    f"firmware key {key_id!r}: {path} is not a PEM public key "
                    "(posfleet firmware keygen writes one)"
                )
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable_pem(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            head = value.read_bytes()[:65536]
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in head:
            raise ValueError(f"{value} is not a PEM file (posfleet tls writes those)")
        return value

    @field_validator("baudrate")
    @classmethod
    def _valid_baudrate(cls, value: int) -> int:
        if value not in (9600, 19200, 38400, 57600, 115200):
            raise ValueError(f"baudrate {value} is not one a ZVT terminal speaks (9600 ... 115200)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if not self.broker_url.startswith("mqtts://") and self.tls_ca_file is not None:
            raise ValueError("tls_ca_file is set but broker_url is not mqtts://")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_cert_file is not None and not self.broker_url.startswith("mqtts://"):
            raise ValueError("tls_cert_file is set but broker_url is not mqtts://")
        if is_zvt_tcp_url(self.serial_url):
            if self.driver != "zvt":
                raise ValueError("serial_url zvt+tcp:// needs driver = 'zvt'")
            parse_zvt_tcp_url(self.serial_url)
        if self.fault_poll_s > self.health_interval_s:
            raise ValueError("fault_poll_s must not exceed health_interval_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.firmware_retry_min_s > self.firmware_retry_max_s:
            raise ValueError("firmware_retry_min_s must not exceed firmware_retry_max_s")
        return self

    @model_validator(mode="after")
    def _passthrough_consistent(self) -> AgentSettings:
        if self.zvt_passthrough_ecr_url is None:
            return self
        if self.driver != "zvt":
            raise ValueError("zvt_passthrough_ecr_url needs driver = 'zvt'")
        if self.serial_url.startswith("zvt+tcp://"):
            raise ValueError("zvt_passthrough_ecr_url: pass-through is serial only in this build")
        if self.zvt_passthrough_ecr_url == self.serial_url:
            raise ValueError("zvt_passthrough_ecr_url must be another port than serial_url")
        return self

    def firmware_keys(self) -> TrustedKeys:
        """The release keys the updater trusts, loaded from their files."""
        from posfleet.firmware.signing import TrustedKeys

        return TrustedKeys.from_pem_files(
            self.firmware_trusted_keys, revoked=self.firmware_revoked_key_ids
        )

    @property
    def mqtt_username(self) -> str:
        """The MQTT username: :attr:`username` or the terminal id."""
        return self.username or self.terminal_id


def load_agent_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``config_file`` (if given and present), the environment and overrides.

    Raises :class:`ConfigError` with every problem listed, one per line.
    """
    return load_plain_settings(
        AgentSettings, config_file, ConfigError, env_prefix=ENV_PREFIX, **overrides
    )
