"""Loading a pydantic-settings class from a TOML file, the environment and overrides.

Shared by the agent and the central service so both read configuration the same way and
explain a bad one the same way: every problem, one per line, with where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

S = TypeVar("S", bound=BaseSettings)


def _check_broker_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"broker_url {value!r} must look like mqtt://host:1883 or mqtts://host:8883"
        )
    return value


BrokerUrl = Annotated[str, AfterValidator(_check_broker_url)]
"""An MQTT broker address: ``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS)."""


def broker_address(url: str) -> tuple[str, int]:
    """Host and port of a :data:`BrokerUrl`; the port defaults to 1883, or 8883 for TLS."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


class BrokerClientSettings(BaseSettings):
    """Base of a daemon's settings: it talks to an MQTT broker and reads TOML + environment.

    Precedence: explicit arguments, then the environment, then the TOML file (if any).
    """

    broker_url: BrokerUrl = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt://host:port, or mqtts:// for TLS"
    )

    @property
    def broker_host(self) -> str:
        """Host part of :attr:`broker_url`."""
        return broker_address(self.broker_url)[0]

    @property
    def broker_port(self) -> int:
        """Port of :attr:`broker_url`, defaulting to 1883, or 8883 for mqtts."""
        return broker_address(self.broker_url)[1]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file named in ``model_config``."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file") is not None:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(
    cls: type[S], config_file: Path | None, error: type[Exception], **overrides: Any
) -> S:
    """Build ``cls`` from ``config_file`` (TOML), the environment and ``overrides``.

    Raises ``error`` with a readable list of every invalid or missing value.
    """
    if config_file is not None and not config_file.is_file():
        raise error(f"config file {config_file} does not exist")
    config = SettingsConfigDict(**{**cls.model_config, "toml_file": config_file})
    bound = type(cls.__name__, (cls,), {"model_config": config})
    try:
        settings: S = bound(**overrides)
    except ValidationError as exc:
        lines = [f"invalid configuration{f' in {config_file}' if config_file else ''}:"]
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"  {where}: {err['msg']}")
        raise error("\n".join(lines)) from None
    return settings
