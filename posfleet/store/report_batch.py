"""Health reports and fault events, stored a batch at a time.

Per batch, whatever its size: one read of the terminals involved (locked on PostgreSQL,
in id order so that two instances cannot deadlock) plus an insert of any not seen
before; one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per table, which
tells which reports are new (the (terminal, seq) key makes redelivery harmless); one
``executemany`` UPDATE carrying each terminal's aggregated changes (sequence gaps and
duplicates, last seen, heartbeat deadline, which report is the latest health). Each new
sample gets the next ``stored_id``; the hourly rollups are folded from the samples later,
many reports at a time (see :mod:`posfleet.store.sample_rollups`).

Health reports are reduced to a :class:`Sample` (a plain tuple of what is stored) before
the statements run; the statements that handle a row per report are driver-level SQL
(see :mod:`posfleet.store.driver_sql`).

On SQLite they are also written to step once per batch rather than once per row. The
driver runs each statement on a thread of its own and needs the interpreter lock again
after every row it steps (an ``executemany`` row, a ``RETURNING`` row, a result row);
while the next batch is being validated on the main thread each of those waits for the
lock, and the database work stops overlapping with validation. So on SQLite the
terminals are read as one row of JSON; the samples are inserted without ``RETURNING``
(under the write lock that ``BEGIN IMMEDIATE`` took, the row count tells whether all
were new, and only a redelivery needs the one ``SELECT`` that finds which were stored
before); and the registry is updated by one ``UPDATE ... FROM (VALUES ...)``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import FaultEvent, HealthMetrics, HealthReport, Message
from posfleet.store.driver_sql import DriverSql, chunks
from posfleet.store.sample_rollups import LATEST_SAMPLE_SQL, SAMPLE_NUMBERS
from posfleet.store.schema import fault_events, terminals
from posfleet.store.upsert import insert_for

HEARTBEAT_MISSES = 2
"""A terminal is offline once this many report intervals pass without a report."""

OFFLINE_BY_LWT = "lwt"
OFFLINE_BY_SILENCE = "heartbeat"
"""Values of ``terminals.offline_reason``: the broker's LWT, or reports that stopped."""


@dataclass(frozen=True, slots=True)
class Report:
    """One health report or fault event from a terminal, already validated."""

    terminal_id: str
    payload: HealthReport | FaultEvent


class Sample(NamedTuple):
    """A validated health report, reduced to what storing it needs.

    Plain values taken once from the model (the metrics already serialised), from
    which the statements' tuples are built.
    """

    terminal_id: str
    seq: int
    ts: datetime
    interval_s: int
    metrics_json: str
    """The report's metrics as JSON text, ``None`` fields left out."""

    @classmethod
    def of(cls, terminal_id: str, report: HealthReport) -> Sample:
        """The sample of a validated ``report``."""
        return cls(
            terminal_id,
            report.seq,
            report.ts,
            report.interval_s,
            # The serializer itself: model_dump_json adds a third on top for its checks.
            _METRICS_JSON.to_json(report.metrics, exclude_none=True).decode(),
        )


_METRICS_JSON = HealthMetrics.__pydantic_serializer__


class SampledMessages(list[Message]):
    """Stored messages with each health report's :class:`Sample` beside it (None for
    the other channels): what the ingest hands its hook, so that a consumer that wants
    the sample (the rule engine's worker) need not serialise the metrics again."""

    __slots__ = ("samples",)

    def __init__(self, messages: Sequence[Message], samples: Sequence[Sample | None]) -> None:
        super().__init__(messages)
        if len(samples) != len(messages):
            raise ValueError("one sample (or None) per message")
        self.samples: list[Sample | None] = list(samples)

    def part(self, start: int, stop: int) -> SampledMessages:
        """The messages from ``start`` to ``stop``, with their samples."""
        return SampledMessages(self[start:stop], self.samples[start:stop])


Stored = Report | Sample
"""What :func:`record_reports` takes: events as reports, health as either."""


@dataclass(slots=True)
class _TerminalChange:
    """What one batch does to one terminal's row."""

    fresh_seqs: list[int] = field(default_factory=list)
    duplicates: int = 0
    latest: Sample | None = None


async def record_reports(
    conn: AsyncConnection, reports: Sequence[Stored], *, now: datetime
) -> list[bool]:
    """Store ``reports`` in the caller's transaction; True for each one not seen before."""
    if not reports:
        return []
    items = [
        Sample.of(r.terminal_id, r.payload)
        if isinstance(r, Report) and isinstance(r.payload, HealthReport)
        else r
        for r in reports
    ]
    current = await _lock_terminals(conn, sorted({r.terminal_id for r in items}), now)
    sql = DriverSql(conn)  # one per batch: it keeps the timestamps it formatted
    samples = [r for r in items if isinstance(r, Sample)]
    event_rows = [_event_row(r) for r in items if isinstance(r, Report)]
    fresh_keys: set[tuple[str, int]] = set()
    if samples:
        fresh_keys |= await _insert_samples(conn, sql, samples)
    if event_rows:
        fresh_keys |= await _insert_new(conn, _event_insert(conn), _unique(event_rows))

    fresh: list[bool] = []
    changes: dict[str, _TerminalChange] = {tid: _TerminalChange() for tid in current}
    for r in items:
        seq = r.seq if isinstance(r, Sample) else r.payload.seq
        key = (r.terminal_id, seq)
        change = changes[r.terminal_id]
        # The same report twice in one batch: the second copy is a duplicate too.
        is_new = key in fresh_keys
        fresh_keys.discard(key)
        fresh.append(is_new)
        if not is_new:
            change.duplicates += 1
            continue
        change.fresh_seqs.append(seq)
        if isinstance(r, Sample) and (change.latest is None or r.seq > change.latest.seq):
            change.latest = r
    await _update_terminals(conn, sql, current, changes, now)
    return fresh


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # PostgreSQL refuses one INSERT that conflicts with itself; keep the first copy.
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault((row["terminal_id"], row["seq"]), row)
    return list(seen.values())


class _TerminalRow(NamedTuple):
    """What a batch needs to know of a terminal before it updates the row."""

    terminal_id: str
    last_seq: int | None
    seq_gaps: int
    health_seq: int | None
    online: bool
    offline_reason: str | None


async def _lock_terminals(
    conn: AsyncConnection, ids: list[str], now: datetime
) -> dict[str, _TerminalRow]:
    """The rows of ``ids``, created first where missing; locked on PostgreSQL."""
    current = await _read_terminals(conn, ids)
    missing = [i for i in ids if i not in current]
    if missing:
        stmt = insert_for(conn, terminals).on_conflict_do_nothing(index_elements=["terminal_id"])
        await conn.execute(
            stmt, [{"terminal_id": i, "first_seen": now, "last_seen": now} for i in missing]
        )
        current.update(await _read_terminals(conn, missing))
    return current


_ROW_COLUMNS = "terminal_id, last_seq, seq_gaps, health_seq, online, offline_reason"


async def _read_terminals(conn: AsyncConnection, ids: list[str]) -> dict[str, _TerminalRow]:
    sql = DriverSql(conn)
    rows: list[_TerminalRow] = []
    for chunk in chunks(ids):
        marks = sql.values_rows(len(chunk), "{0}", 1)[1:-1].replace("), (", ", ")
        if sql.postgres:
            result = await conn.exec_driver_sql(
                f"SELECT {_ROW_COLUMNS} FROM terminals WHERE terminal_id IN ({marks}) "
                "ORDER BY terminal_id FOR UPDATE",
                tuple(chunk),
            )
            rows += (_TerminalRow._make(row) for row in result.all())
        else:
            # One row of JSON rather than one row per terminal (see the module's notes).
            result = await conn.exec_driver_sql(
                f"SELECT json_group_array(json_array({_ROW_COLUMNS})) FROM terminals "
                f"WHERE terminal_id IN ({marks})",
                tuple(chunk),
            )
            for tid, last_seq, gaps, health_seq, online, reason in json.loads(result.scalar_one()):
                rows.append(_TerminalRow(tid, last_seq, gaps, health_seq, bool(online), reason))
    return {row.terminal_id: row for row in rows}


async def _insert_samples(
    conn: AsyncConnection, sql: DriverSql, samples: list[Sample]
) -> set[tuple[str, int]]:
    """Insert the samples not stored before; the keys of those inserted."""
    # PostgreSQL refuses one INSERT that conflicts with itself; keep the first copy.
    unique = list({(s.terminal_id, s.seq): s for s in reversed(samples)}.values())
    unique.reverse()
    template = "{0}, {1}, {2}, " + sql.as_json("{3}") + ", "
    if sql.postgres:
        template, width = template + SAMPLE_NUMBERS, 4
    else:
        # Numbered here: BEGIN IMMEDIATE gave us the write lock, nobody else numbers now
        # (and the unique index refuses a number twice should a caller forget that).
        template, width = template + "{4}", 5
        numbers = itertools.count(
            int((await conn.exec_driver_sql(LATEST_SAMPLE_SQL)).scalar_one()) + 1
        )
    fresh: set[tuple[str, int]] = set()
    for chunk in chunks(unique):
        params: list[Any] = []
        for s in chunk:
            params += (s.terminal_id, s.seq, sql.timestamp(s.ts), s.metrics_json)
            if not sql.postgres:
                params.append(next(numbers))
        insert = (
            "INSERT INTO health_samples (terminal_id, seq, ts, metrics, stored_id) VALUES "
            + sql.values_rows(len(chunk), template, width)
            + " ON CONFLICT (terminal_id, seq) DO NOTHING"
        )
        if sql.postgres:
            result = await conn.exec_driver_sql(
                insert + " RETURNING terminal_id, seq", tuple(params)
            )
            keys: list[tuple[str, int]] = [tuple(row) for row in result.all()]
            fresh.update(keys)
            continue
        # SQLite: the write lock is ours since BEGIN IMMEDIATE, so nobody else stores
        # anything meanwhile. Usually every sample is new: insert them all, and if
        # SQLite counts as many new rows as were sent, that is the answer.
        wanted = [(s.terminal_id, s.seq) for s in chunk]
        async with conn.begin_nested() as attempt:
            inserted = await conn.exec_driver_sql(insert, tuple(params))
            if inserted.rowcount == len(chunk):
                fresh.update(wanted)
                continue
            await attempt.rollback()
        # Some were stored before (a redelivery): find which, then insert again.
        fresh.update(await _sqlite_not_stored(conn, sql, wanted))
        await conn.exec_driver_sql(insert, tuple(params))
    return fresh


async def _sqlite_not_stored(
    conn: AsyncConnection, sql: DriverSql, wanted: list[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The keys of ``wanted`` that ``health_samples`` does not hold yet (SQLite)."""
    # A join, not "(terminal_id, seq) IN (VALUES ...)": SQLite scans the whole
    # table for the latter, and finds each key in the primary key for this.
    stored = await conn.exec_driver_sql(
        "SELECT s.terminal_id, s.seq FROM (VALUES "
        + sql.values_rows(len(wanted), "{0}, {1}", 2)
        + ") AS v JOIN health_samples AS s ON s.terminal_id = v.column1 AND s.seq = v.column2",
        tuple(itertools.chain.from_iterable(wanted)),
    )
    already: set[tuple[str, int]] = {tuple(row) for row in stored.all()}
    return [key for key in wanted if key not in already]


def _event_insert(conn: AsyncConnection) -> Any:
    stmt = insert_for(conn, fault_events).on_conflict_do_nothing(
        index_elements=["terminal_id", "seq"]
    )
    return stmt.returning(fault_events.c.terminal_id, fault_events.c.seq)


def _event_row(report: Report) -> dict[str, Any]:
    event = report.payload
    assert isinstance(event, FaultEvent)
    return {
        "terminal_id": report.terminal_id,
        "seq": event.seq,
        "ts": event.ts,
        "code": event.code,
        "component": event.component.value,
        "severity": event.severity.value,
        "detail": event.detail,
        "zvt_result_code": event.zvt_result_code,
    }


async def _insert_new(
    conn: AsyncConnection, stmt: Any, rows: list[dict[str, Any]]
) -> set[tuple[str, int]]:
    result = await conn.execute(stmt, rows)
    return {(tid, seq) for tid, seq in result.all()}


_TERMINAL_CHANGES = """
    last_seq = {1},
    seq_gaps = {2},
    seq_duplicates = seq_duplicates + {3},
    last_seen = CASE WHEN last_seen < {4} THEN {4} ELSE last_seen END,
    report_interval_s = coalesce({5}, report_interval_s),
    heartbeat_due_at = coalesce({6}, heartbeat_due_at),
    health_at = coalesce({7}, health_at),
    health_seq = coalesce({8}, health_seq)
"""
"""The row change per terminal; ``{n}`` is the n-th value of the row (the 9th its id).

The newest report's metrics stay in ``health_samples``: ``health_seq`` points at them.
"""

_WIDTH = 9
_ROW_TEMPLATE = ", ".join(f"{{{i}}}" for i in range(_WIDTH))


def _update_terminal_sql(sql: DriverSql) -> str:
    """One terminal per execution (``executemany``): PostgreSQL."""
    values = ["", *(sql.param(n) for n in range(1, _WIDTH + 1))]
    return (
        f"UPDATE terminals SET {_TERMINAL_CHANGES.format(*values)} "
        f"WHERE terminal_id = {values[_WIDTH]}"
    )


def _sqlite_update_from(sql: DriverSql, rows: int) -> str:
    """All terminals of a chunk in one statement (see the module's notes): SQLite."""
    values = ["", *(f"v.column{n}" for n in range(1, _WIDTH + 1))]
    return (
        f"UPDATE terminals SET {_TERMINAL_CHANGES.format(*values)} "
        f"FROM (VALUES {sql.values_rows(rows, _ROW_TEMPLATE, _WIDTH)}) AS v "
        f"WHERE terminals.terminal_id = v.column{_WIDTH}"
    )


async def _update_terminals(
    conn: AsyncConnection,
    sql: DriverSql,
    current: dict[str, _TerminalRow],
    changes: dict[str, _TerminalChange],
    now: datetime,
) -> None:
    now_value = sql.timestamp(now)
    rows: list[tuple[Any, ...]] = []
    revived: list[str] = []
    for terminal_id, change in changes.items():
        row = current[terminal_id]
        last_seq, gaps = _advance(row.last_seq, row.seq_gaps, change.fresh_seqs)
        latest = change.latest
        if latest is not None and row.health_seq is not None and latest.seq <= row.health_seq:
            latest = None  # a late report (outbox replay) must not replace newer health
        if (
            change.latest is not None
            and not row.online
            and row.offline_reason == OFFLINE_BY_SILENCE
        ):
            revived.append(terminal_id)
        interval = change.latest.interval_s if change.latest else None
        due = (
            sql.timestamp(now + timedelta(seconds=HEARTBEAT_MISSES * interval))
            if interval
            else None
        )
        rows.append(
            (
                last_seq,
                gaps,
                change.duplicates,
                now_value,
                interval,
                due,
                sql.timestamp(latest.ts) if latest is not None else None,
                latest.seq if latest is not None else None,
                terminal_id,
            )
        )
    if sql.postgres:
        await conn.exec_driver_sql(_update_terminal_sql(sql), rows)
    else:
        for chunk in chunks(rows):
            await conn.exec_driver_sql(
                _sqlite_update_from(sql, len(chunk)),
                tuple(value for row in chunk for value in row),
            )
    if revived:
        # Reports again after the sweeper gave it up for silent: online once more.
        await conn.execute(
            sa.update(terminals)
            .where(terminals.c.terminal_id.in_(revived))
            .values(online=True, offline_reason=None, state_changed_at=now)
        )


def _advance(last_seq: int | None, gaps: int, fresh: list[int]) -> tuple[int | None, int]:
    """Account for newly stored sequence numbers, in arrival order.

    A jump past ``last_seq + 1`` adds the skipped numbers to the gaps; a late arrival
    below ``last_seq`` (an outbox replay overtaken by live reports) fills one of them.
    The first seq ever seen opens the count: earlier history is unknown, not lost.
    """
    for seq in fresh:
        if last_seq is None:
            last_seq = seq
        elif seq > last_seq:
            gaps += seq - last_seq - 1
            last_seq = seq
        elif gaps > 0:
            gaps -= 1
    return last_seq, gaps
