"""The central service's composition root: database, ingest bridge and dashboard.

The dashboard app owns the bridge's lifetime through ``cleanup_ctx``, so stopping the web
app stops ingest too, in the right order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import BrokerLogin, MqttPublisher, Publisher
from posfleet.broker_bridge.housekeeping import Housekeeping, HousekeepingSchedule
from posfleet.broker_bridge.influx_sink import InfluxSink
from posfleet.broker_bridge.ingest import Ingest, StoredHook
from posfleet.broker_bridge.mqtt_settings import BrokerConnection
from posfleet.central.settings import CentralSettings
from posfleet.contract import Channel, Message
from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import COMMANDS_KEY, LOGIN_THROTTLE_KEY
from posfleet.dashboard.firmware_actions_api import FIRMWARE_OFFERS_KEY
from posfleet.dashboard.firmware_download import FirmwareDelivery
from posfleet.dashboard.incidents_api import PLAYBOOK_RUNNER_KEY
from posfleet.dashboard.incidents_page import RULES_IN_FORCE_KEY
from posfleet.dashboard.metrics_endpoint import (
    DIAGNOSTICS_STATS_KEY,
    HOUSEKEEPING_KEY,
    INGEST_KEY,
)
from posfleet.dashboard.rollout_service import ROLLOUT_RUNNER_KEY
from posfleet.dashboard.security_headers import BEHIND_TLS_PROXY_KEY
from posfleet.diagnostics.backup_schedule import BackupSchedule, ScheduledBackups
from posfleet.diagnostics.command_channel import DownlinkCommandSender
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.diagnostics.command_sweeper import CommandSweeper
from posfleet.diagnostics.config_backups import on_command_result
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.diagnostics.remote_commands import ResultConsumer
from posfleet.diagnostics.runtime import Diagnostics
from posfleet.diagnostics.webhooks import WebhookSettings
from posfleet.firmware.action_sweeper import ActionSweeper
from posfleet.firmware.cancel_notices import CancelResultHandler
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.offers import FirmwareOffers
from posfleet.firmware.rollout_runner import RolloutRunner
from posfleet.firmware.status_ingest import UpdateStatusHandler
from posfleet.gc_tuning import tune_gc
from posfleet.reports import ReportSummaries, SummaryCadence, SummarySchedule
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade
from posfleet.tls_contexts import TlsFiles, server_context

log = logging.getLogger(__name__)

DIAGNOSTICS_KEY = web.AppKey("diagnostics", Diagnostics)

RESULT_CONSUMERS: tuple[ResultConsumer, ...] = (on_command_result,)
"""What else happens, in the ingest's transaction, when a staff command's result arrives."""


def broker_connection(settings: CentralSettings) -> BrokerConnection:
    """The bridge's broker connection as configured."""
    return BrokerConnection(
        host=settings.broker_host,
        port=settings.broker_port,
        username=settings.broker_username,
        password=settings.broker_password.get_secret_value(),
        client_id=settings.mqtt_client_id(),
        share_group=settings.share_group,
        partition=settings.partition,
        tls=settings.broker_url.startswith("mqtts://"),
        tls_files=settings.broker_tls or TlsFiles(),
    )


def command_login(settings: CentralSettings) -> BrokerLogin:
    """The downlink's login (commands, offers): the central service's broker user."""
    return BrokerLogin(
        host=settings.broker_host,
        port=settings.broker_port,
        username=settings.broker_username,
        password=settings.broker_password.get_secret_value(),
        client_id=f"{settings.mqtt_client_id()}-commands",
        tls=settings.broker_tls,
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


def firmware_offers(
    settings: CentralSettings, engine: AsyncEngine, publisher: Publisher
) -> FirmwareOffers:
    """Pushes and offers: tokens under the download secret, URLs under the public address.

    With ``http_port = 0`` the address is only known once the listener is bound;
    :func:`running_central` fills it in then.
    """
    configured = settings.firmware.public_base_url
    return FirmwareOffers(
        engine,
        DownloadTokens(settings.download_token_secret()),
        base_url=configured or (settings.firmware_base_url if settings.http_port else None),
        publisher=publisher,
        token_ttl=timedelta(seconds=settings.firmware.download_token_ttl_s),
    )


def rollout_instance(settings: CentralSettings) -> str:
    """This instance's name in rollout leases: its client id, host and process."""
    return f"{settings.client_id}@{socket.gethostname()}:{os.getpid()}"


def rollout_runner(
    settings: CentralSettings, engine: AsyncEngine, offers: FirmwareOffers
) -> RolloutRunner:
    """The rollout runner of this instance, paced as configured."""
    return RolloutRunner(
        engine,
        offers,
        instance_id=rollout_instance(settings),
        interval=timedelta(seconds=settings.rollout_interval_s),
        lease=timedelta(seconds=settings.rollout_lease_s),
        joiner_scan=timedelta(seconds=settings.rollout_joiner_scan_s),
    )


def backup_schedule(settings: CentralSettings) -> BackupSchedule:
    """The scheduled configuration backups' period, pace and budget as configured."""
    return BackupSchedule(
        period=timedelta(hours=settings.config_backup_period_h),
        interval=timedelta(seconds=settings.config_backup_interval_s),
        budget=settings.config_backup_budget,
    )


def report_summaries(
    settings: CentralSettings, engine: AsyncEngine, diagnostics: Diagnostics
) -> ReportSummaries:
    """The scheduled report summary; one instance of many sends each (see posfleet.reports)."""
    return ReportSummaries(
        engine,
        WebhookSettings(urls=settings.diagnostics.webhook_urls),
        SummarySchedule(SummaryCadence(settings.report_summary), settings.report_summary_hour_utc),
        instance=rollout_instance(settings),
        rules=lambda: diagnostics.rules,
    )


def _each(*hooks: StoredHook) -> StoredHook:
    async def hook(messages: Sequence[Message]) -> None:
        for one in hooks:
            await one(messages)

    return hook


def _owns(settings: CentralSettings) -> Callable[[str], bool]:
    """Which terminals this instance judges: its partition's, or all of them."""
    share = settings.share
    return (lambda _terminal_id: True) if share is None else share.owns


def _ingest_ctx(
    settings: CentralSettings, engine: AsyncEngine
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with (
            Diagnostics(engine, settings.diagnostics, owns=_owns(settings)) as diagnostics,
            MqttPublisher(command_login(settings)) as downlink,
            CommandSweeper(engine, downlink),
            ScheduledBackups(engine, downlink, backup_schedule(settings)),
            report_summaries(settings, engine, diagnostics),
            telemetry_sinks(settings) as sinks,
            Housekeeping(engine, housekeeping_schedule(settings)) as housekeeping,
            ActionSweeper(firmware_offers(settings, engine, downlink)) as firmware,
            rollout_runner(settings, engine, firmware.offers) as rollouts,
            Ingest(
                broker_connection(settings),
                engine,
                on_stored=_each(firmware.on_stored, diagnostics.on_stored),
                handlers={
                    Channel.FW_STATUS: UpdateStatusHandler(firmware.offers.policy),
                    # Staff commands' results first; the firmware's cancels keep theirs.
                    Channel.CMD_RESULT: CommandResultHandler(
                        consumers=RESULT_CONSUMERS, others=(CancelResultHandler(),)
                    ),
                },
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
            app[DIAGNOSTICS_STATS_KEY] = diagnostics.stats
            app[PLAYBOOK_RUNNER_KEY] = PlaybookRunner(engine, DownlinkCommandSender(downlink))
            app[COMMANDS_KEY] = downlink
            app[FIRMWARE_OFFERS_KEY] = firmware.offers
            app[ROLLOUT_RUNNER_KEY] = rollouts
            app[RULES_IN_FORCE_KEY] = diagnostics
            yield

    return ctx


def firmware_delivery(settings: CentralSettings) -> FirmwareDelivery:
    """The firmware routes' blobs, keys, token secret and caps, from ``settings``."""
    delivery = FirmwareDelivery.from_settings(
        settings.firmware,
        artifacts_dir=settings.artifacts_dir,
        token_secret=settings.download_token_secret(),
    )
    delivery.store.remove_stale_partials()
    return delivery


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

    @property
    def rollout_runner(self) -> RolloutRunner:
        """The running rollout runner (its ``stats.rounds`` count its rounds)."""
        return self.app[ROLLOUT_RUNNER_KEY]


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
        firmware=firmware_delivery(settings),
    )
    app[BEHIND_TLS_PROXY_KEY] = settings.dashboard_behind_tls_proxy
    app[LOGIN_THROTTLE_KEY].trusted_proxies = tuple(settings.dashboard_trusted_proxies)
    tls = None
    if settings.dashboard_tls_cert is not None and settings.dashboard_tls_key is not None:
        tls = server_context(settings.dashboard_tls_cert, settings.dashboard_tls_key)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port, ssl_context=tls)
        await site.start()
        port = _bound_port(runner, settings.http_port)
        listener = f"{settings.dashboard_scheme}://{settings.http_host}:{port}"
        offers = app.get(FIRMWARE_OFFERS_KEY)
        if offers is not None and offers.base_url is None:
            offers.base_url = listener
            offers.changed.set()
        yield RunningCentral(listener, engine, app)
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
