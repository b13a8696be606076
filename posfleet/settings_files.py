"""Loading a pydantic-settings class from a TOML file, the environment and overrides.

The central service's loader; the agent's (:mod:`posfleet.settings_plain`) reads the same
way and explains a bad configuration the same way: every problem, one per line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from posfleet.settings_plain import BrokerClientFields, BrokerUrl, broker_address, explain

__all__ = ["BrokerClientSettings", "BrokerUrl", "broker_address", "load_settings"]

S = TypeVar("S", bound=BaseSettings)


class BrokerClientSettings(BrokerClientFields, BaseSettings):
    """Base of the central service's settings: an MQTT broker, TOML + environment.

    Precedence: explicit arguments, then the environment, then the TOML file (if any).
    (The agent reads the same way without pydantic-settings: :mod:`posfleet.settings_plain`.)
    """

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
        raise error(explain(exc, config_file)) from None
    return settings
