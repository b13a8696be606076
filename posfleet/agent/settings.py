"""The agent's one settings object: TOML file plus ``POSFLEET_AGENT_*`` environment."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from posfleet.agent.errors import ConfigError
from posfleet.contract import validate_terminal_id
from posfleet.settings_files import BrokerClientSettings, load_settings

DEFAULT_CONFIG_FILE = Path("/etc/posfleet/agent.toml")


class AgentSettings(BrokerClientSettings):
    """Everything the agent daemon needs to know; invalid combinations fail at load time."""

    model_config = SettingsConfigDict(
        env_prefix="POSFLEET_AGENT_", extra="forbid", validate_default=True
    )

    terminal_id: str = Field(description="this terminal's id, also its MQTT username")
    username: str | None = Field(default=None, description="defaults to the terminal id")
    password: SecretStr = SecretStr("")
    tls_ca_file: Path | None = None
    keepalive_s: Annotated[int, Field(ge=2, le=3600)] = 60
    reconnect_min_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    serial_url: str = Field(description="device path, pty, socket://host:port or rfc2217://")
    baudrate: int = 9600
    driver: str = Field(default="maintenance", pattern=r"^(maintenance|zvt)$")
    reply_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    health_interval_s: Annotated[int, Field(ge=1, le=86400)] = 60
    fault_poll_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    state_dir: Path = Path("/var/lib/posfleet-agent")
    outbox_max_entries: Annotated[int, Field(ge=10)] = 50_000
    command_history: Annotated[int, Field(ge=10, le=1_000_000)] = 1000

    trusted_firmware_keys: list[str] = Field(
        default_factory=list,
        description="base64 Ed25519 public keys (32 bytes each) allowed to sign firmware",
    )

    site_id: str = ""
    timezone: str = "UTC"

    @field_validator("terminal_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return validate_terminal_id(value)

    @field_validator("trusted_firmware_keys")
    @classmethod
    def _valid_firmware_keys(cls, value: list[str]) -> list[str]:
        for i, key in enumerate(value):
            try:
                raw = base64.b64decode(key.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"trusted_firmware_keys[{i}] is not valid base64") from None
            if len(raw) != 32:
                raise ValueError(
                    f"trusted_firmware_keys[{i}] decodes to {len(raw)} bytes; "
                    "an Ed25519 public key has 32"
                )
        if len(set(value)) != len(value):
            raise ValueError("trusted_firmware_keys lists the same key twice")
        return [key.strip() for key in value]

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
        if self.fault_poll_s > self.health_interval_s:
            raise ValueError("fault_poll_s must not exceed health_interval_s")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def mqtt_username(self) -> str:
        """The MQTT username: :attr:`username` or the terminal id."""
        return self.username or self.terminal_id


def load_agent_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``config_file`` (if given and present), the environment and overrides.

    Raises :class:`ConfigError` with every problem listed, one per line.
    """
    return load_settings(AgentSettings, config_file, ConfigError, **overrides)
