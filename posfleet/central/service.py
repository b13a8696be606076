"""The central service's composition root: database, ingest bridge and dashboard.

The dashboard app owns the bridge's lifetime through ``cleanup_ctx``, so stopping the web
app stops ingest too, in the right order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.gc_tuning import tune_gc
from posfleet.broker_bridge.housekeeping import Housekeeping, HousekeepingSchedule
from posfleet.broker_bridge.influx_sink import InfluxSink
from posfleet.broker_bridge.ingest import Ingest
from posfleet.broker_bridge.mqtt_settings import BrokerConnection
from posfleet.central.settings import CentralSettings
from posfleet.dashboard import create_app
from posfleet.dashboard.incidents_api import PLAYBOOK_RUNNER_KEY
from posfleet.dashboard.metrics_endpoint import HOUSEKEEPING_KEY, INGEST_KEY
from posfleet.diagnostics.command_channel import BrokerLogin, MqttCommandSender
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.diagnostics.runtime import Diagnostics
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade

log = logging.getLogger(__name__)

DIAGNOSTICS_KEY = web.AppKey("diagnostics", Diagnostics)


def broker_connection(settings: CentralSettings) -> BrokerConnection:
    """The bridge's broker connection as configured."""
    return BrokerConnection(
        host=settings.broker_host,
        port=settings.broker_port,
        username=settings.broker_username,
        password=settings.broker_password.get_secret_value(),
        client_id=settings.client_id,
        share_group=settings.share_group,
        tls=settings.broker_url.startswith("mqtts://"),
    )


def command_login(settings: CentralSettings) -> BrokerLogin:
    """The playbooks' command channel: the central service's broker user."""
    return BrokerLogin(
        host=settings.broker_host,
        port=settings.broker_port,
        username=settings.broker_username,
        password=settings.broker_password.get_secret_value(),
        client_id=f"{settings.client_id}-commands",
    )


@asynccontextmanager
async def telemetry_sinks(settings: CentralSettings) -> AsyncIterator[list[InfluxSink]]:
    """The configured telemetry sinks, running until the block ends (none by default)."""
    if settings.influx_url is None:
        yield []
        return
    async with InfluxSink(
        settings.influx_url,
        token=settings.influx_token.get_secret_value(),
        org=settings.influx_org,
        bucket=settings.influx_bucket,
    ) as sink:
        yield [sink]


def housekeeping_schedule(settings: CentralSettings) -> HousekeepingSchedule:
    """Heartbeat sweep and telemetry retention as configured."""
    return HousekeepingSchedule(
        sweep_interval=timedelta(seconds=settings.heartbeat_sweep_s),
        fold_interval=timedelta(seconds=settings.rollup_fold_interval_s),
        raw_retention=timedelta(days=settings.raw_retention_days),
        rollup_retention=timedelta(days=settings.rollup_retention_days),
    )


def _ingest_ctx(
    settings: CentralSettings, engine: AsyncEngine
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with (
            Diagnostics(engine, settings.diagnostics) as diagnostics,
            MqttCommandSender(command_login(settings)) as commands,
            telemetry_sinks(settings) as sinks,
            Housekeeping(engine, housekeeping_schedule(settings)) as housekeeping,
            Ingest(
                broker_connection(settings),
                engine,
                on_stored=diagnostics.on_stored,
                sinks=sinks,
                queue_size=settings.ingest_queue_size,
                batch_size=settings.ingest_batch_size,
                writer=settings.ingest_writer,
                fold_interval_s=settings.rollup_fold_interval_s,
            ) as ingest,
        ):
            app[INGEST_KEY] = ingest
            app[HOUSEKEEPING_KEY] = housekeeping
            app[DIAGNOSTICS_KEY] = diagnostics
            app[PLAYBOOK_RUNNER_KEY] = PlaybookRunner(engine, commands)
            yield

    return ctx


@dataclass(frozen=True, slots=True)
class RunningCentral:
    """Handles to a started central service."""

    url: str
    engine: AsyncEngine
    app: web.Application

    @property
    def ingest(self) -> Ingest:
        """The running ingest bridge."""
        return self.app[INGEST_KEY]

    @property
    def diagnostics(self) -> Diagnostics:
        """The running diagnostics service (rule engine and incidents)."""
        return self.app[DIAGNOSTICS_KEY]


@asynccontextmanager
async def running_central(settings: CentralSettings) -> AsyncIterator[RunningCentral]:
    """Migrate the database, start ingest and the dashboard; stop both on exit."""
    url = settings.resolved_database_url
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    app = create_app(
        engine,
        session_secret=settings.session_secret(),
        extra_cleanup_ctx=(_ingest_ctx(settings, engine),),
    )
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        port = _bound_port(runner, settings.http_port)
        yield RunningCentral(f"http://{settings.http_host}:{port}", engine, app)
    finally:
        await runner.cleanup()
        await engine.dispose()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured


async def serve_forever(
    settings: CentralSettings,
    stop: asyncio.Event,
    on_ready: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Run the central service until ``stop`` is set."""
    tune_gc()
    async with running_central(settings) as central:
        log.info("central service listening on %s", central.url)
        if on_ready is not None:
            await on_ready(central.url)
        await stop.wait()
