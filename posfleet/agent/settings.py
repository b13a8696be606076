"""The agent's one settings object: TOML file plus ``POSFLEET_AGENT_*`` environment.

Plain Python, not pydantic: on a terminal pydantic costs megabytes of resident memory,
and the agent's settings are a dictionary merge and a few checks. :func:`load_agent_settings`
reads the TOML file, takes the ``POSFLEET_AGENT_<FIELD>`` environment variables (names in
any case; lists and dictionaries as JSON), lets explicit arguments win, and validates
once. Precedence: arguments, then the environment, then the file. ``AgentSettings(...)``
takes exactly what it is given and validates it the same way.

A bad configuration is explained like the central service's (:mod:`posfleet.settings_plain`):
every problem, one per line, with the field it is about, under a line naming the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from posfleet.agent.drivers.zvt_tcp import is_zvt_tcp_url, parse_zvt_tcp_url
from posfleet.agent.errors import ConfigError
from posfleet.contract.topics import validate_terminal_id
from posfleet.toml_files import read_toml

if TYPE_CHECKING:
    from posfleet.firmware.signing import TrustedKeys

DEFAULT_CONFIG_FILE = Path("/etc/posfleet/agent.toml")

ENV_PREFIX = "POSFLEET_AGENT_"

BAUDRATES = (9600, 19200, 38400, 57600, 115200)
"""The rates a ZVT terminal speaks."""


class Secret:
    """A password: kept out of ``repr`` and logs (``get_secret_value`` gives it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# -- checks of single fields: each raises ValueError with the sentence a person reads ----------


def broker_address(url: str) -> tuple[str, int]:
    """Host and port of a broker URL; the port defaults to 1883, or 8883 for ``mqtts``."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883)


def _broker_url(value: str) -> None:
    # As posfleet.settings_plain.BrokerUrl (which needs pydantic): the same sentence.
    parts = urlsplit(value)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"broker_url {value!r} must look like mqtt://host:1883 or mqtts://host:8883"
        )


def _terminal_id(value: str) -> None:
    validate_terminal_id(value)


def _known_timezone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"timezone {value!r} is not an IANA time zone name") from None


def _readable_firmware_keys(value: dict[str, Path]) -> None:
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


def _readable_pem(value: Path) -> None:
    try:
        head = value.read_bytes()[:65536]
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in head:
        raise ValueError(f"{value} is not a PEM file (posfleet tls writes those)")


def _baudrate(value: int) -> None:
    if value not in BAUDRATES:
        raise ValueError(f"baudrate {value} is not one a ZVT terminal speaks (9600 ... 115200)")


# -- the fields -------------------------------------------------------------------------------

_REQUIRED: Any = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its kind, default, bounds and extra check."""

    kind: str
    """``str``, ``int``, ``float``, ``path``, ``secret``, ``key_files`` (id -> path) or
    ``strings`` (a list)."""
    default: Any = _REQUIRED
    optional: bool = False
    """``None`` is allowed (and the default when no other is given)."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    doc: str = ""

    @property
    def required(self) -> bool:
        """No default: the configuration must give it."""
        return self.default is _REQUIRED and not self.optional and not self.structured

    @property
    def structured(self) -> bool:
        """Lists and dictionaries: JSON in the environment."""
        return self.kind in ("key_files", "strings")

    def initial(self) -> Any:
        """The default value (a fresh one for lists and dictionaries)."""
        if self.default is _REQUIRED and self.optional:
            return None
        if self.kind == "key_files":
            return {}
        if self.kind == "strings":
            return []
        return self.default


FIELDS: dict[str, Field] = {
    "broker_url": Field(
        "str",
        "mqtt://127.0.0.1:1883",
        check=_broker_url,
        doc="mqtt://host:port, or mqtts:// for TLS",
    ),
    "terminal_id": Field(
        "str", check=_terminal_id, doc="this terminal's id, also its MQTT username"
    ),
    "username": Field("str", optional=True, doc="defaults to the terminal id"),
    "password": Field("secret", Secret("")),
    "tls_ca_file": Field(
        "path",
        optional=True,
        check=_readable_pem,
        doc="CA that signed the broker's certificate (mqtts://)",
    ),
    "tls_cert_file": Field(
        "path",
        optional=True,
        check=_readable_pem,
        doc="this terminal's client certificate, if the broker asks",
    ),
    "tls_key_file": Field(
        "path", optional=True, check=_readable_pem, doc="the client certificate's key"
    ),
    "keepalive_s": Field("int", 60, ge=2, le=3600),
    "reconnect_min_s": Field("float", 1.0, gt=0, le=600),
    "reconnect_max_s": Field("float", 60.0, gt=0, le=3600),
    "serial_url": Field(
        "str",
        doc="device path, pty, socket://host:port or rfc2217://; zvt+tcp://host[:port] for "
        "ZVT over TCP/IP (unframed APDUs, port 20007 by default)",
    ),
    "baudrate": Field("int", 9600, check=_baudrate),
    "driver": Field("str", "maintenance", choices=("maintenance", "zvt")),
    "reply_timeout_s": Field("float", 10.0, gt=0, le=600),
    "zvt_passthrough_ecr_url": Field(
        "str",
        optional=True,
        doc="ZVT pass-through: the port the cash register is wired to (device path or pty); "
        "the agent forwards between it and the terminal on serial_url",
    ),
    "zvt_passthrough_idle_s": Field("float", 20.0, gt=0, le=3600),
    "health_interval_s": Field("int", 60, ge=1, le=86400),
    "fault_poll_s": Field("float", 5.0, gt=0, le=3600),
    "state_dir": Field("path", Path("/var/lib/posfleet-agent")),
    "outbox_max_entries": Field("int", 50_000, ge=10),
    "command_history": Field("int", 1000, ge=10, le=1_000_000),
    "firmware_trusted_keys": Field(
        "key_files",
        check=_readable_firmware_keys,
        doc="release keys allowed to sign firmware: key id -> PEM public key file "
        "(two at once while a key is rotated)",
    ),
    "firmware_revoked_key_ids": Field(
        "strings", doc="key ids refused even if a key file is listed"
    ),
    "firmware_health_window_s": Field("float", 300.0, gt=0, le=1500),
    "firmware_boot_timeout_s": Field("float", 300.0, gt=0, le=3600),
    "firmware_health_poll_s": Field("float", 5.0, gt=0, le=600),
    "firmware_busy_retry_s": Field("float", 30.0, gt=0, le=3600),
    "firmware_window_recheck_s": Field("float", 60.0, gt=0, le=3600),
    "firmware_download_timeout_s": Field("float", 30.0, gt=0, le=600),
    "firmware_download_max_attempts": Field("int", 30, ge=1, le=10_000),
    "firmware_retry_min_s": Field("float", 1.0, gt=0, le=600),
    "firmware_retry_max_s": Field("float", 300.0, gt=0, le=3600),
    "firmware_ca_file": Field(
        "path", optional=True, doc="CA bundle for an https download URL (default: system CAs)"
    ),
    "site_id": Field("str", ""),
    "timezone": Field("str", "UTC", check=_known_timezone),
    "merchant_name": Field(
        "str",
        "",
        max_length=128,
        doc="the merchant's trading name for the inventory (when the terminal does not say)",
    ),
    "site_name": Field("str", "", max_length=128),
}
"""Every setting of the agent, in the order problems are reported."""


# -- turning what the file, the environment or a caller gives into the field's type -----------


def _convert(spec: Field, value: Any) -> Any:
    """``value`` as the field's type; ``ValueError`` saying what was expected."""
    if value is None:
        if spec.optional:
            return None
        raise ValueError("Input should not be empty (None)")
    kind = spec.kind
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"Input should be a valid string (got {value!r})")
        return value
    if kind == "secret":
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ValueError("Input should be a valid string")
        return Secret(value)
    if kind == "int":
        return _integer(value)
    if kind == "float":
        return _number(value)
    if kind == "path":
        return _path(value)
    if kind == "key_files":
        if not isinstance(value, Mapping):
            raise ValueError(f"Input should be a table of key id = PEM file (got {value!r})")
        keys: dict[str, Path] = {}
        for key, path in value.items():
            if not isinstance(key, str):
                raise ValueError(f"key id {key!r} should be a string")
            keys[key] = _path(path)
        return keys
    if kind == "strings":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"Input should be a list of strings (got {value!r})")
        return list(value)
    raise AssertionError(f"no conversion for {kind}")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"Input should be a valid integer (got {value!r})")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"Input should be a valid integer (got {value!r})")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"Input should be a valid number (got {value!r})")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"Input should be a valid number (got {value!r})") from None
    else:
        raise ValueError(f"Input should be a valid number (got {value!r})")
    if math.isnan(number):
        raise ValueError("Input should be a finite number")
    return number


def _path(value: Any) -> Path:
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise ValueError(f"Input should be a path (got {value!r})")


def _within(spec: Field, value: Any) -> None:
    """The bounds, length and choices of ``spec``; ``ValueError`` if ``value`` is outside."""
    if value is None:
        return
    if spec.ge is not None and value < spec.ge:
        raise ValueError(f"Input should be greater than or equal to {spec.ge:g}")
    if spec.gt is not None and value <= spec.gt:
        raise ValueError(f"Input should be greater than {spec.gt:g}")
    if spec.le is not None and value > spec.le:
        raise ValueError(f"Input should be less than or equal to {spec.le:g}")
    if spec.max_length is not None and len(value) > spec.max_length:
        raise ValueError(f"Input should have at most {spec.max_length} characters")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"Input should be {' or '.join(repr(c) for c in spec.choices)}")
    if spec.check is not None:
        spec.check(value)


class AgentSettings:
    """Everything the agent daemon needs to know; invalid combinations fail at once.

    ``AgentSettings(terminal_id=..., serial_url=..., ...)`` takes the fields of
    :data:`FIELDS` as keywords and raises :class:`~posfleet.agent.errors.ConfigError`
    listing every problem. The settings cannot be changed once built.
    """

    broker_url: str
    terminal_id: str
    username: str | None
    password: Secret
    tls_ca_file: Path | None
    tls_cert_file: Path | None
    tls_key_file: Path | None
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    serial_url: str
    baudrate: int
    driver: str
    reply_timeout_s: float
    zvt_passthrough_ecr_url: str | None
    zvt_passthrough_idle_s: float
    """Pass-through: how long the link must be quiet before the agent polls the terminal."""
    health_interval_s: int
    fault_poll_s: float
    state_dir: Path
    outbox_max_entries: int
    command_history: int
    firmware_trusted_keys: dict[str, Path]
    firmware_revoked_key_ids: list[str]
    firmware_health_window_s: float
    """How long a new slot must run without a critical fault before it is confirmed
    (below the terminal's own 30 min confirm timeout)."""
    firmware_boot_timeout_s: float
    firmware_health_poll_s: float
    firmware_busy_retry_s: float
    firmware_window_recheck_s: float
    firmware_download_timeout_s: float
    firmware_download_max_attempts: int
    firmware_retry_min_s: float
    firmware_retry_max_s: float
    firmware_ca_file: Path | None
    site_id: str
    timezone: str
    merchant_name: str
    """The merchant's trading name for the inventory (when the terminal does not say)."""
    site_name: str

    def __init__(self, **values: Any) -> None:
        problems: list[str] = [
            f"{name}: Extra inputs are not permitted" for name in values if name not in FIELDS
        ]
        for name, spec in FIELDS.items():
            if name not in values:
                if spec.required:
                    problems.append(f"{name}: Field required")
                    continue
                value = spec.initial()
            else:
                try:
                    value = _convert(spec, values[name])
                    _within(spec, value)
                except ValueError as exc:
                    problems.append(f"{name}: {exc}")
                    continue
            object.__setattr__(self, name, value)
        if not problems:
            problem = self._inconsistency()
            if problem is not None:
                problems.append(f"settings: {problem}")
        if problems:
            raise ConfigError("\n".join(["invalid configuration:", *(f"  {p}" for p in problems)]))

    def _inconsistency(self) -> str | None:
        """The first combination of values that does not go together, if any."""
        mqtts = self.broker_url.startswith("mqtts://")
        if not mqtts and self.tls_ca_file is not None:
            return "tls_ca_file is set but broker_url is not mqtts://"
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            return "tls_cert_file and tls_key_file go together: set both or neither"
        if self.tls_cert_file is not None and not mqtts:
            return "tls_cert_file is set but broker_url is not mqtts://"
        if is_zvt_tcp_url(self.serial_url):
            if self.driver != "zvt":
                return "serial_url zvt+tcp:// needs driver = 'zvt'"
            try:
                parse_zvt_tcp_url(self.serial_url)
            except ValueError as exc:
                return str(exc)
        if self.fault_poll_s > self.health_interval_s:
            return "fault_poll_s must not exceed health_interval_s"
        if self.reconnect_min_s > self.reconnect_max_s:
            return "reconnect_min_s must not exceed reconnect_max_s"
        if self.firmware_retry_min_s > self.firmware_retry_max_s:
            return "firmware_retry_min_s must not exceed firmware_retry_max_s"
        if self.zvt_passthrough_ecr_url is not None:
            if self.driver != "zvt":
                return "zvt_passthrough_ecr_url needs driver = 'zvt'"
            if self.serial_url.startswith("zvt+tcp://"):
                return "zvt_passthrough_ecr_url: pass-through is serial only in this build"
            if self.zvt_passthrough_ecr_url == self.serial_url:
                return "zvt_passthrough_ecr_url must be another port than serial_url"
        return None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"AgentSettings are read-only (cannot set {name})")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"AgentSettings({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AgentSettings):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes: Any) -> AgentSettings:
        """A copy with ``changes``, validated again."""
        return AgentSettings(**({name: getattr(self, name) for name in FIELDS} | changes))

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

    @property
    def broker_host(self) -> str:
        """Host part of :attr:`broker_url`."""
        return broker_address(self.broker_url)[0]

    @property
    def broker_port(self) -> int:
        """Port of :attr:`broker_url`, defaulting to 1883, or 8883 for mqtts."""
        return broker_address(self.broker_url)[1]


def environment_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The settings given as ``POSFLEET_AGENT_<NAME>`` variables (names in any case).

    Raises ``ValueError`` naming the variable if a list or dictionary is not JSON.
    """
    env = os.environ if environ is None else environ
    by_upper = {name.upper(): value for name, value in env.items()}
    found: dict[str, Any] = {}
    for name, spec in FIELDS.items():
        variable = f"{ENV_PREFIX}{name}".upper()
        if variable not in by_upper:
            continue
        raw = by_upper[variable]
        if spec.structured:
            try:
                found[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{variable} must be JSON ({exc.msg})") from None
        else:
            found[name] = raw
    return found


def load_agent_settings(config_file: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``config_file`` (if given), the environment and ``overrides``.

    Raises :class:`ConfigError` with every problem listed, one per line.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values = read_toml(config_file, ConfigError)
    try:
        values |= environment_values()
    except ValueError as exc:
        raise ConfigError(f"invalid configuration in the environment: {exc}") from None
    values |= overrides
    try:
        return AgentSettings(**values)
    except ConfigError as exc:
        if config_file is None:
            raise
        rest = str(exc).partition("\n")[2]
        raise ConfigError(f"invalid configuration in {config_file}:\n{rest}") from None
