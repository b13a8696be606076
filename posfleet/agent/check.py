"""``posfleet-agent check``: is the terminal reachable on its serial port, and the broker?

Each check gives one line: ``ok`` with what it found, or ``FAIL`` with what is wrong and
what to do about it. Run it after installing or re-cabling a terminal; it does not disturb
a running agent (its broker login uses a client id of its own).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from posfleet.agent.drivers.errors import MalformedReplyError, TerminalRefusedError
from posfleet.agent.drivers.zvt_tcp import ZvtTcpLink, is_zvt_tcp_url
from posfleet.agent.errors import AgentError
from posfleet.agent.runner import broker_endpoint, make_driver
from posfleet.agent.serial.errors import (
    NoAckError,
    PortClosedError,
    PortOpenError,
    ReplyTimeoutError,
    SerialLinkError,
)
from posfleet.agent.serial.link import SerialLink
from posfleet.agent.serial.port_io import PortSettings
from posfleet.agent.settings import AgentSettings
from posfleet.agent.uplink import BrokerEndpoint, tls_context
from posfleet.tls_contexts import explain_tls_alert, explain_tls_failure

BROKER_TIMEOUT_S = 10.0
_REFUSED_LOGIN = {"Bad user name or password", "Not authorized", "Client identifier not valid"}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check, as one line for a person."""

    name: str
    ok: bool
    message: str

    def line(self) -> str:
        """``ok    serial  ...`` or ``FAIL  broker  ...``."""
        return f"{'ok' if self.ok else 'FAIL':<5} {self.name:<7} {self.message}"


async def check_serial(settings: AgentSettings) -> CheckResult:
    """Open the serial port (or the ``zvt+tcp://`` connection) and ask the terminal who it is."""
    url, driver_name = settings.serial_url, settings.driver
    over_tcp = is_zvt_tcp_url(url)
    try:
        link: SerialLink | ZvtTcpLink
        if over_tcp:
            link = ZvtTcpLink.from_url(url)
        else:
            link = SerialLink(url, settings=PortSettings(baudrate=settings.baudrate))
        async with link:
            identity = await make_driver(settings, link).identify()
    except ValueError as exc:  # a zvt+tcp:// address that is not one
        return CheckResult("serial", False, f"{exc}. Fix serial_url.")
    except PortOpenError as exc:
        if over_tcp:
            return CheckResult(
                "serial",
                False,
                f"{exc}. Check the host and port in serial_url (ZVT's default port is "
                "20007), that the terminal's ECR interface is set to TCP/IP, and that no "
                "firewall is in between.",
            )
        return CheckResult(
            "serial",
            False,
            f"{exc}. Check serial_url, that the cable is plugged in, and that the agent's "
            "user may open it (group dialout).",
        )
    except NoAckError as exc:
        if over_tcp:
            return CheckResult(
                "serial",
                False,
                f"{url}: {exc}. Something accepts connections there but does not answer "
                "ZVT: check that the port is the terminal's ECR port.",
            )
        return CheckResult(
            "serial",
            False,
            f"{url}: {exc}. Check that the terminal is on, the cable, and the line speed "
            f"(baudrate = {settings.baudrate}; ZVT terminals use 9600 or 115200).",
        )
    except ReplyTimeoutError as exc:
        return CheckResult(
            "serial",
            False,
            f"{url}: {exc}. The terminal hears the agent but does not answer "
            f"{driver_name!r} commands: check the driver setting.",
        )
    except (TerminalRefusedError, MalformedReplyError) as exc:
        return CheckResult(
            "serial",
            False,
            f"{url}: {exc}. The terminal does not speak the {driver_name!r} command set: "
            "check the driver setting (maintenance or zvt).",
        )
    except (PortClosedError, SerialLinkError, AgentError) as exc:
        return CheckResult("serial", False, f"{url}: {exc}")
    line = "TCP/IP" if over_tcp else f"{settings.baudrate} baud"
    return CheckResult(
        "serial",
        True,
        f"{url}: {identity.model} serial {identity.serial}, firmware "
        f"{identity.firmware_version} ({driver_name} driver, {line})",
    )


def _connect_once(endpoint: BrokerEndpoint, client_id: str, timeout: float) -> str | None:
    """Connect and disconnect; None if the broker accepted, else why not."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.use_tls:
        try:
            client.tls_set_context(tls_context(endpoint))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            return (
                f"cannot load the TLS files (tls_ca_file {endpoint.tls_ca_file}, tls_cert_file "
                f"{endpoint.tls_cert_file}): {exc}. Check that they are the PEM files "
                "posfleet tls wrote, and that the key belongs to the certificate"
            )
    answers: list[ReasonCode] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    # paho logs, and does not raise, a TLS alert that arrives after the handshake (a
    # TLS 1.3 broker refusing our client certificate does so on the first read).
    errors: list[str] = []
    client.on_log = lambda _c, _u, level, text: (
        errors.append(text) if level == mqtt.MQTT_LOG_ERR else None
    )
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=max(5, int(timeout)))
    except ssl.SSLError as exc:
        return explain_tls_failure(exc, host=endpoint.host, ca_file=endpoint.tls_ca_file)
    except OSError as exc:
        return f"cannot reach the broker ({exc.strerror or exc}): check broker_url and the network"
    deadline = time.monotonic() + timeout
    try:
        while not answers and time.monotonic() < deadline:
            if client.loop(timeout=0.1) not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                break
    finally:
        client.disconnect()
    tls_errors = [error for error in errors if "_ssl.c" in error]
    if not answers and endpoint.use_tls and tls_errors:
        return explain_tls_alert(
            tls_errors[0],
            host=endpoint.host,
            ca_file=endpoint.tls_ca_file,
            has_client_cert=endpoint.tls_cert_file is not None,
        )
    if not answers:
        return f"no answer from the broker within {timeout:.0f} s (is it an MQTT broker?)"
    reason = answers[0]
    if not reason.is_failure:
        return None
    if str(reason) in _REFUSED_LOGIN:
        return (
            f"the broker refused the login of {endpoint.username!r}: {reason}. Check "
            "username and password in the agent's config (a re-provisioned terminal "
            "gets a new password)."
        )
    return f"the broker refused the connection: {reason}"


async def check_broker(settings: AgentSettings) -> CheckResult:
    """Log in to the broker with the configured credentials."""
    endpoint = broker_endpoint(settings)
    why = await asyncio.to_thread(
        _connect_once, endpoint, f"check-{settings.terminal_id}", BROKER_TIMEOUT_S
    )
    where = settings.broker_url
    if why is not None:
        return CheckResult("broker", False, f"{where}: {why}")
    return CheckResult("broker", True, f"{where}: logged in as {endpoint.username!r}")


async def run_checks(settings: AgentSettings) -> list[CheckResult]:
    """Every check, serial first; they are independent, so all of them run."""
    return [await check_serial(settings), await check_broker(settings)]
