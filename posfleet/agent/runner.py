"""Compose one agent from its settings: serial link, driver, outbox, uplink, daemon.

Only what the settings name is imported: the one driver, and ZVT over TCP/IP or the
pass-through only when configured (every module is resident memory on a terminal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from contextlib import AsyncExitStack

from posfleet.agent.daemon import Agent, AgentIdentity, state_payload
from posfleet.agent.drivers.base import HealthData, TerminalDriver
from posfleet.agent.drivers.zvt_tcp import ZvtTcpLink, is_zvt_tcp_url
from posfleet.agent.errors import ConfigError
from posfleet.agent.firmware_config import UpdaterConfig
from posfleet.agent.outbox import Outbox
from posfleet.agent.serial.link import Link, SerialLink
from posfleet.agent.serial.port_io import PortSettings
from posfleet.agent.settings import AgentSettings
from posfleet.agent.uplink import BrokerEndpoint, MqttUplink

log = logging.getLogger(__name__)


def make_driver(settings: AgentSettings, link: Link) -> TerminalDriver:
    """The driver named in the settings, on ``link``."""
    if settings.driver == "maintenance":
        from posfleet.agent.drivers.maintenance import MaintenanceDriver

        return MaintenanceDriver(link, reply_timeout=settings.reply_timeout_s)
    if settings.driver == "zvt":
        from posfleet.agent.drivers.zvt import ZvtDriver

        return ZvtDriver(link, reply_timeout=settings.reply_timeout_s)
    raise ConfigError(f"driver {settings.driver!r} is not available in this agent build")


def updater_config(settings: AgentSettings) -> UpdaterConfig:
    """How the firmware updater behaves, from the settings (state under ``state_dir``)."""
    return UpdaterConfig(
        directory=settings.state_dir / "firmware",
        trusted_keys=settings.firmware_keys,
        terminal_id=settings.terminal_id,
        timezone=settings.timezone,
        driver_name=settings.driver,
        health_window_s=settings.firmware_health_window_s,
        boot_timeout_s=settings.firmware_boot_timeout_s,
        health_poll_s=settings.firmware_health_poll_s,
        busy_retry_s=settings.firmware_busy_retry_s,
        window_recheck_s=settings.firmware_window_recheck_s,
        download_timeout_s=settings.firmware_download_timeout_s,
        download_max_attempts=settings.firmware_download_max_attempts,
        retry_min_s=settings.firmware_retry_min_s,
        retry_max_s=settings.firmware_retry_max_s,
        ca_file=settings.firmware_ca_file,
    )


def broker_endpoint(settings: AgentSettings) -> BrokerEndpoint:
    """Where the uplink connects, from the settings."""
    return BrokerEndpoint(
        host=settings.broker_host,
        port=settings.broker_port,
        username=settings.mqtt_username,
        password=settings.password.get_secret_value(),
        client_id=f"agent-{settings.terminal_id}",
        keepalive_s=settings.keepalive_s,
        tls_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file else None,
        tls_cert_file=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        tls_key_file=str(settings.tls_key_file) if settings.tls_key_file else None,
        use_tls=settings.broker_url.startswith("mqtts://"),
        reconnect_min_s=settings.reconnect_min_s,
        reconnect_max_s=settings.reconnect_max_s,
    )


async def run_agent(
    settings: AgentSettings,
    stop: asyncio.Event,
    *,
    durable: bool = True,
    link: Link | None = None,
) -> None:
    """Run one agent until ``stop`` is set; on the way out say offline and close cleanly.

    ``durable=False`` relaxes the outbox's fsync and ``link`` replaces the serial port
    named in the settings (an in-process simulator): both for the fleet simulator only.
    """
    identity = AgentIdentity(
        terminal_id=settings.terminal_id,
        boot_id=os.urandom(16).hex(),  # 32 hex digits, as uuid4().hex (without uuid's imports)
        site_id=settings.site_id,
        timezone=settings.timezone,
        merchant_name=settings.merchant_name,
        site_name=settings.site_name,
    )
    outbox = Outbox(
        settings.state_dir / "outbox.sqlite3",
        max_entries=settings.outbox_max_entries,
        durable=durable,
        command_history=settings.command_history,
    )
    uplink = MqttUplink(
        settings.terminal_id,
        broker_endpoint(settings),
        will=state_payload(identity, online=False),
        offline=state_payload(identity, online=False),
    )
    port = PortSettings(baudrate=settings.baudrate)
    try:
        async with AsyncExitStack() as stack:
            observed: Callable[[HealthData], HealthData] | None = None
            if link is None and settings.zvt_passthrough_ecr_url is not None:
                from posfleet.agent.passthrough import SerialPassthrough, add_ecr_block

                passthrough = await stack.enter_async_context(
                    SerialPassthrough(
                        settings.zvt_passthrough_ecr_url,
                        settings.serial_url,
                        settings=port,
                        idle_s=settings.zvt_passthrough_idle_s,
                    )
                )
                link, observed = passthrough.link, add_ecr_block(passthrough)
            if link is None and is_zvt_tcp_url(settings.serial_url):
                link = await stack.enter_async_context(ZvtTcpLink.from_url(settings.serial_url))
            elif link is None:
                link = await stack.enter_async_context(
                    SerialLink(settings.serial_url, settings=port)
                )
            await stack.enter_async_context(uplink)
            agent = Agent(
                identity,
                make_driver(settings, link),
                uplink,
                outbox,
                health_interval_s=settings.health_interval_s,
                fault_poll_s=settings.fault_poll_s,
                firmware=updater_config(settings),
                observed=observed,
            )
            runner = asyncio.create_task(agent.run(), name=f"agent-{settings.terminal_id}")
            stopper = asyncio.create_task(stop.wait(), name="stop")
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            agent.stop()
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
    finally:
        outbox.close()
