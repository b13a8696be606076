"""``/metrics``: the central service's counters in the Prometheus text format (0.0.4).

The path follows the Prometheus convention rather than the ``/api/`` prefix, so the
general middleware treats it as public and this handler authenticates itself: an API
token with at least the ``ops`` role, sent as ``Authorization: Bearer <token>`` (in
Prometheus: ``authorization: {credentials_file: ...}``). Metrics reveal fleet size and
traffic, so they are never served anonymously, not even on loopback.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from aiohttp import web

from posfleet.broker_bridge.housekeeping import Housekeeping
from posfleet.broker_bridge.ingest import Ingest
from posfleet.dashboard.access import public
from posfleet.dashboard.app_keys import ENGINE_KEY, LOGIN_THROTTLE_KEY
from posfleet.dashboard.errors import ForbiddenError, NotAuthenticatedError
from posfleet.dashboard.firmware_download import FIRMWARE_KEY, download_metric_families
from posfleet.diagnostics.runtime import DiagnosticsStats
from posfleet.store.accounts import Role, resolve_api_token
from posfleet.store.login_attempts import AttemptKind
from posfleet.store.schema import terminals

INGEST_KEY = web.AppKey("ingest", Ingest)
"""The running ingest bridge, set by the central service while it runs."""

HOUSEKEEPING_KEY = web.AppKey("housekeeping", Housekeeping)
"""The running housekeeping chores, set by the central service while they run."""

DIAGNOSTICS_STATS_KEY = web.AppKey("diagnostics_stats", DiagnosticsStats)
"""The running diagnostics service's counters, set by the central service while it runs."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUIRED_ROLE = Role.OPS

# (metric name after posfleet_ingest_, help, IngestStats attribute)
_INGEST_COUNTERS = (
    ("messages_received_total", "Messages received from the broker.", "received"),
    (
        "messages_processed_total",
        "Messages stored, duplicate, dead-lettered or ignored.",
        "processed",
    ),
    ("messages_stored_total", "New messages stored.", "stored"),
    ("duplicates_total", "Redelivered messages that were already stored.", "duplicates"),
    ("dead_letters_total", "Messages rejected into the dead-letter table.", "dead_lettered"),
    ("ignored_total", "Messages on channels that nothing stores yet.", "ignored"),
    (
        "oversize_total",
        "Payloads above the contract's size limit that reached the centre (dead-lettered).",
        "oversize",
    ),
    (
        "other_partition_total",
        "Messages of terminals another instance serves (partition mode), acknowledged unread.",
        "other_partition",
    ),
    ("store_retries_total", "Batches retried after a transient database error.", "store_retries"),
    ("hook_errors_total", "Failures of the on_stored hook (diagnostics).", "hook_errors"),
    (
        "writer_restarts_total",
        "Times the store writer process was started again after it died.",
        "writer_restarts",
    ),
    (
        "decode_seconds_total",
        "CPU seconds the service spent decoding and validating messages.",
        "decode_seconds",
    ),
)
# (metric name after posfleet_diagnostics_, type, help, DiagnosticsStats attribute)
_DIAGNOSTICS_FAMILIES = (
    ("rules", "gauge", "Rules in force.", "rules"),
    (
        "engine_seconds_total",
        "counter",
        "CPU seconds the rule engine (its worker process) spent judging.",
        "engine_seconds",
    ),
    (
        "worker_restarts_total",
        "counter",
        "Times the rule worker process was started again after it died.",
        "worker_restarts",
    ),
    (
        "failed_requests_total",
        "counter",
        "Requests to the rule engine that failed: stored messages left unjudged.",
        "failed_requests",
    ),
    ("rule_reload_failures_total", "counter", "Failed rule file reloads.", "reload_failures"),
)
# (metric name after posfleet_sink_, type, help, SinkStats attribute)
_SINK_FAMILIES = (
    ("points_written_total", "counter", "Points the sink's backend accepted.", "written"),
    ("points_dropped_total", "counter", "Points dropped: buffer full or refused.", "dropped"),
    ("errors_total", "counter", "Failed write attempts to the sink's backend.", "errors"),
    ("buffered_points", "gauge", "Points waiting to be written.", "buffered"),
)


class _Exposition:
    """Builds the text format: HELP and TYPE once per family, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix_and_labels, value in samples:
            self.lines.append(f"{name}{suffix_and_labels} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


async def _require_ops_token(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticatedError("send an API token: Authorization: Bearer <token>")
    async with request.app[ENGINE_KEY].begin() as conn:
        found = await resolve_api_token(conn, token.strip())
    if found is None:
        raise NotAuthenticatedError("the API token is unknown or revoked")
    if not found.role.permits(REQUIRED_ROLE):
        raise ForbiddenError(
            f"metrics need the {REQUIRED_ROLE} role; {found.actor} has {found.role}"
        )


async def render_metrics(app: web.Application) -> str:
    """The current metrics of the service behind ``app``."""
    out = _Exposition()
    async with app[ENGINE_KEY].connect() as conn:
        online = await conn.scalar(
            sa.select(sa.func.count()).select_from(terminals).where(terminals.c.online)
        )
    out.family(
        "posfleet_terminals_online", "gauge", "Terminals currently online.", [("", online or 0)]
    )
    ingest = app.get(INGEST_KEY)
    if ingest is not None:
        s = ingest.stats
        for name, help_text, attribute in _INGEST_COUNTERS:
            out.family(
                f"posfleet_ingest_{name}", "counter", help_text, [("", getattr(s, attribute))]
            )
        out.family(
            "posfleet_ingest_queue_depth",
            "gauge",
            "Messages received and waiting to be stored.",
            [("", s.queue_depth)],
        )
        h = s.batch_latency
        buckets: list[tuple[str, float]] = [
            (f'_bucket{{le="{bound:g}"}}', count) for bound, count in h.cumulative()
        ]
        buckets += [('_bucket{le="+Inf"}', h.total), ("_sum", h.sum), ("_count", h.total)]
        out.family(
            "posfleet_ingest_batch_seconds",
            "histogram",
            "Time to store and acknowledge one batch.",
            buckets,
        )
        for name, kind, help_text, attribute in _SINK_FAMILIES:
            samples = [
                (f'{{sink="{sink.name}"}}', getattr(sink.stats, attribute)) for sink in ingest.sinks
            ]
            out.family(f"posfleet_sink_{name}", kind, help_text, samples)
    diagnostics = app.get(DIAGNOSTICS_STATS_KEY)
    if diagnostics is not None:
        for name, kind, help_text, attribute in _DIAGNOSTICS_FAMILIES:
            value = getattr(diagnostics, attribute)
            out.family(f"posfleet_diagnostics_{name}", kind, help_text, [("", value)])
    housekeeping = app.get(HOUSEKEEPING_KEY)
    if housekeeping is not None:
        out.family(
            "posfleet_terminals_marked_offline_total",
            "counter",
            "Terminals marked offline after missing two heartbeats.",
            [("", housekeeping.stats.marked_offline)],
        )
    firmware = app.get(FIRMWARE_KEY)
    if firmware is not None:
        for name, kind, help_text, samples in download_metric_families(firmware.stats):
            out.family(name, kind, help_text, samples)
    throttle = app[LOGIN_THROTTLE_KEY]
    out.family(
        "posfleet_login_throttled_total",
        "counter",
        "Login attempts held back by the throttle (this instance), by the limit that held them.",
        [(f'{{limit="{kind.value}"}}', throttle.throttled[kind]) for kind in AttemptKind],
    )
    return out.text()


@public
async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format; needs an ops API token (see module doc)."""
    await _require_ops_token(request)
    return web.Response(
        text=await render_metrics(request.app), headers={"Content-Type": CONTENT_TYPE}
    )


def add_routes(app: web.Application) -> None:
    """Register ``/metrics``."""
    app.router.add_get("/metrics", metrics)
