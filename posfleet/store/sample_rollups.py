"""Folding stored health samples into the hourly rollups, behind a watermark.

The ingest stores raw samples only; every sample is numbered in the order it was stored
(``health_samples.stored_id``). :func:`fold_samples` sums every sample past the
watermark in ``rollup_progress`` per terminal and UTC hour, in one ``INSERT ... SELECT
... GROUP BY`` that reads the numbers the rollups keep straight out of the metrics JSON,
merges the sums into ``health_rollups`` (adding counts and sums, keeping minima and
maxima), and moves the watermark, all in one transaction. So each report is counted
exactly once, however the ingest batched it, whatever crashed, and however many
instances fold: a redelivered report is never stored twice, and a fold that fails
leaves the watermark where it was.

Set-based SQL run once a minute costs less than merging every ingest batch from Python
did (figures in ``docs/deploy-at-scale.md``), and it takes that work out of the
transaction the broker's acknowledgements wait for; the more reports of a terminal's
hour one fold holds, the fewer rows it writes.

Which samples may be folded: on SQLite the fold holds the write lock, so every stored
sample is committed. On PostgreSQL a sample numbered before another may still be in an
open transaction; the fold first takes a ``SHARE`` lock on ``health_samples`` just long
enough to read the highest number, which waits for every open insert to end, so
everything up to that number is committed or gone.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract.health import PRINTER_WORKING
from posfleet.store.driver_sql import DriverSql
from posfleet.store.engine import write_transaction
from posfleet.store.health_rollups import ROLLUP_COLUMNS, ROLLUP_ON_CONFLICT
from posfleet.store.schema import SAMPLE_IDS

ROLLUPS_WATERMARK = "health_rollups"
"""The ``rollup_progress`` row of the hourly health rollups."""

FOLD_CHUNK_SAMPLES = 100_000
"""Most samples (by number) folded in one transaction, so a backlog never holds a long one."""

SAMPLE_NUMBERS = f"nextval('{SAMPLE_IDS.name}')"
"""PostgreSQL: the SQL that numbers a new sample (SQLite's are numbered by the writer)."""

LATEST_SAMPLE_SQL = "SELECT coalesce(max(stored_id), 0) FROM health_samples"
"""The number of the last sample stored (0 if none)."""

_PRINTER_WORKING = ", ".join(sorted(f"'{s.value}'" for s in PRINTER_WORKING))


class _JsonPaths:
    """How one backend reads a value out of the metrics JSON."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def value(self, path: str, cast: str = "") -> str:
        """The value at ``path`` (dotted); on PostgreSQL as text, or cast to ``cast``."""
        if not self.postgres:
            return f"json_extract(metrics, '$.{path}')"
        *parents, leaf = path.split(".")
        text = "metrics" + "".join(f"->'{p}'" for p in parents) + f"->>'{leaf}'"
        return f"({text})::{cast}" if cast else text

    def is_bool(self, path: str, value: bool) -> str:
        """True where the JSON boolean at ``path`` is ``value``."""
        # json_extract gives 1 and 0 for JSON true and false; ->> gives 'true' and 'false'.
        literal = f"'{str(value).lower()}'" if self.postgres else str(int(value))
        return f"{self.value(path)} = {literal}"

    def is_object(self, path: str) -> str:
        """True where ``path`` holds a JSON object."""
        if self.postgres:
            return f"jsonb_typeof(metrics->'{path}') = 'object'"
        return f"json_type(metrics, '$.{path}') = 'object'"


def _vitals(postgres: bool) -> str:
    """The numbers of one sample a rollup keeps, as the columns the fold aggregates."""
    j = _JsonPaths(postgres)

    def reader_sum(counter: str) -> str:
        parts = " + ".join(
            f"coalesce({j.value(f'card_reader.{i}.{counter}', 'bigint')}, 0)"
            for i in ("chip", "magstripe", "contactless")
        )
        return f"CASE WHEN {j.is_object('card_reader')} THEN {parts} END"

    return f"""
        {j.value("temperature_c", "float8")} AS t,
        {j.value("battery.percent", "float8")} AS b,
        {j.value("network.rssi_dbm", "int")} AS r,
        CASE WHEN {j.is_bool("network.host_reachable", False)} THEN 1 ELSE 0 END AS hu,
        CASE WHEN {j.value("printer.status")} NOT IN ({_PRINTER_WORKING}) THEN 1 ELSE 0 END AS pf,
        CASE WHEN {j.is_bool("tamper", True)} THEN 1 ELSE 0 END AS tp,
        {reader_sum("reads")} AS rr,
        {reader_sum("errors")} AS re,
        {j.value("transactions.declined", "bigint")} AS d"""


# The stored text of an hour is the sample's own 'YYYY-MM-DD HH:MM:SS.ffffff' cut to the hour.
_SQLITE_HOUR = "substr(ts, 1, 13) || ':00:00.000000'"
_POSTGRES_HOUR = "date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def _fold_statement(postgres: bool) -> str:
    """Sums the samples numbered in (lo, hi] into their rollup rows."""
    hour, vitals = (_POSTGRES_HOUR if postgres else _SQLITE_HOUR), _vitals(postgres)
    sigil = "$" if postgres else "?"
    lo, hi = f"{sigil}1", f"{sigil}2"
    # In ROLLUP_COLUMNS order: the sums, then the minima, then the maxima.
    aggregates = (
        "count(*), coalesce(sum(t), 0), count(t), sum(hu), sum(pf), sum(tp), "
        "min(b), min(r), max(t), max(rr), max(re), max(d)"
    )
    return (
        f"INSERT INTO health_rollups ({', '.join(ROLLUP_COLUMNS)}) "
        f"SELECT terminal_id, hour, {aggregates} FROM ("
        f"SELECT terminal_id, {hour} AS hour, {vitals} FROM health_samples "
        f"WHERE stored_id > {lo} AND stored_id <= {hi}) AS v "
        # "WHERE true" keeps SQLite from reading ON CONFLICT as a join's ON.
        "WHERE true GROUP BY terminal_id, hour" + ROLLUP_ON_CONFLICT
    )


_FOLD = {False: _fold_statement(False), True: _fold_statement(True)}


async def fold_samples(engine: AsyncEngine, *, chunk: int = FOLD_CHUNK_SAMPLES) -> int:
    """Fold every sample stored past the watermark into the hourly rollups.

    Returns how many samples were folded. Safe to call from several processes at once:
    each chunk is one transaction that takes the watermark row first.
    """
    postgres = engine.dialect.name == "postgresql"
    folded = 0
    while True:
        committed_up_to = await _committed_up_to(engine) if postgres else None
        async with write_transaction(engine) as conn:
            count, more = await _fold_chunk(conn, chunk, committed_up_to)
        folded += count
        if not more:
            return folded


async def _committed_up_to(engine: AsyncEngine) -> int:
    """PostgreSQL: the highest sample number below which nothing is still uncommitted."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql("LOCK TABLE health_samples IN SHARE MODE")
        result = await conn.exec_driver_sql(LATEST_SAMPLE_SQL)
        return int(result.scalar_one())


async def _fold_chunk(
    conn: AsyncConnection, chunk: int, committed_up_to: int | None
) -> tuple[int, bool]:
    """Fold the next ``chunk`` sample numbers; (samples folded, whether more wait)."""
    sql = DriverSql(conn)
    one, two = sql.param(1), sql.param(2)
    # The row is made by the migration; a database emptied by hand gets it back here.
    await conn.exec_driver_sql(
        f"INSERT INTO rollup_progress (name, stored_id) VALUES ({one}, 0) "
        "ON CONFLICT (name) DO NOTHING",
        (ROLLUPS_WATERMARK,),
    )
    lo = await _watermark(conn, sql, for_update=True)
    if committed_up_to is None:
        latest = await conn.exec_driver_sql(LATEST_SAMPLE_SQL)
        committed_up_to = int(latest.scalar_one())
    hi = min(committed_up_to, lo + chunk)
    if hi <= lo:
        return 0, False
    counted = await conn.exec_driver_sql(
        f"SELECT count(*) FROM health_samples WHERE stored_id > {one} AND stored_id <= {two}",
        (lo, hi),
    )
    await conn.exec_driver_sql(_FOLD[sql.postgres], (lo, hi))
    await conn.exec_driver_sql(
        f"UPDATE rollup_progress SET stored_id = {one} WHERE name = {two}",
        (hi, ROLLUPS_WATERMARK),
    )
    return int(counted.scalar_one()), hi < committed_up_to


async def rollup_watermark(conn: AsyncConnection) -> int:
    """The number of the last sample folded into the rollups (0 before the first fold)."""
    return await _watermark(conn, DriverSql(conn), for_update=False)


async def _watermark(conn: AsyncConnection, sql: DriverSql, *, for_update: bool) -> int:
    # FOR UPDATE on PostgreSQL: folders take turns; SQLite's write lock does that there.
    lock = " FOR UPDATE" if for_update and sql.postgres else ""
    row = (
        await conn.exec_driver_sql(
            f"SELECT stored_id FROM rollup_progress WHERE name = {sql.param(1)}{lock}",
            (ROLLUPS_WATERMARK,),
        )
    ).first()
    return 0 if row is None else int(row[0])
