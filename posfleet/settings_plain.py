"""Settings from a TOML file, the environment and overrides, on plain pydantic models.

The agent's loader. pydantic-settings does the same for the central service, but on a
terminal it costs 6.5 MB of resident memory for what is a dictionary merge: read the TOML
file, take the ``<PREFIX><FIELD>`` environment variables (names in any case; lists and
dictionaries as JSON, like pydantic-settings), let explicit arguments win, and validate
once. Precedence: arguments, then the environment, then the file.

Both loaders explain a bad configuration the same way (:func:`explain`): every problem,
one per line, with the field it is about.
"""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from posfleet.toml_files import read_toml

M = TypeVar("M", bound=BaseModel)


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


class BrokerClientFields(BaseModel):
    """What every daemon's settings have: the MQTT broker it talks to."""

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


def explain(exc: ValidationError, config_file: Path | None) -> str:
    """Every problem of ``exc``, one per line, under a line naming the file."""
    lines = [f"invalid configuration{f' in {config_file}' if config_file else ''}:"]
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _is_structured(annotation: Any) -> bool:
    """True for list, tuple, set and dict fields (optionally ``| None``): JSON in the env."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, frozenset, dict):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation))
    return False


def environment_values(
    cls: type[BaseModel], prefix: str, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The fields of ``cls`` set in the environment as ``<prefix><NAME>`` (any case).

    Raises ``ValueError`` naming the variable if a list or dictionary is not JSON.
    """
    env = os.environ if environ is None else environ
    by_upper = {name.upper(): value for name, value in env.items()}
    found: dict[str, Any] = {}
    for name, field in cls.model_fields.items():
        variable = f"{prefix}{name}".upper()
        if variable not in by_upper:
            continue
        raw = by_upper[variable]
        if _is_structured(field.annotation):
            try:
                found[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{variable} must be JSON ({exc.msg})") from None
        else:
            found[name] = raw
    return found


def load_plain_settings(
    cls: type[M],
    config_file: Path | None,
    error: type[Exception],
    *,
    env_prefix: str,
    **overrides: Any,
) -> M:
    """Build ``cls`` from ``config_file`` (TOML), the ``env_prefix`` environment and
    ``overrides``; raises ``error`` with a readable list of every invalid or missing value.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values = read_toml(config_file, error)
    try:
        values |= environment_values(cls, env_prefix)
    except ValueError as exc:
        raise error(f"invalid configuration in the environment: {exc}") from None
    values |= overrides
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise error(explain(exc, config_file)) from None
