"""The central store on a real SQLite file and a real PostgreSQL server.

Every test runs on both backends. PostgreSQL is the session's private server, started by
the ``postgres_server`` fixture from the Debian package's binaries; the session creates
and drops its own database there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Inventory,
    Printer,
    PrinterStatus,
    Severity,
    State,
)
from posfleet.store import (
    apply_event,
    apply_health,
    apply_inventory,
    apply_state,
    get_terminal,
    list_dead_letters,
    list_terminals,
    record_dead_letter,
    upgrade_engine,
)
from posfleet.store.migrate import alembic_config
from posfleet.store.schema import health_samples, metadata

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def state(online: bool, boot_id: str = "boot-1", ts: datetime = T0) -> State:
    return State(online=online, agent_version="1.4.0", boot_id=boot_id, ts=ts)


def inventory(firmware: str = "5.2.1", ts: datetime = T0, serial: str = "SN-0001") -> Inventory:
    return Inventory(
        model="V400m",
        serial=serial,
        hw_revision="B",
        firmware_version=firmware,
        app_versions={"payment": "3.1.0"},
        agent_version="1.4.0",
        merchant_id="M-42",
        site_id="S-7",
        timezone="Europe/Berlin",
        capabilities=["printer", "contactless"],
        ts=ts,
    )


def health(seq: int, printer: PrinterStatus = PrinterStatus.OK) -> HealthReport:
    return HealthReport(
        seq=seq,
        ts=T0 + timedelta(minutes=seq),
        interval_s=60,
        metrics=HealthMetrics(printer=Printer(status=printer), temperature_c=35.5),
    )


def event(seq: int) -> FaultEvent:
    return FaultEvent(
        seq=seq,
        ts=T0 + timedelta(minutes=seq),
        code="printer.no_paper",
        component=Component.PRINTER,
        severity=Severity.ERROR,
        zvt_result_code=0xCC,
    )


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_create_exactly_the_declared_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    # The newest revision shipped (later revisions stack on top of this one).
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    await upgrade_engine(engine)  # already at head: a no-op, not an error


async def test_birth_registers_terminal_and_lwt_takes_it_offline(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await apply_state(conn, "T-1", state(online=True), now=T0)
    async with engine.connect() as conn:
        record = await get_terminal(conn, "T-1")
    assert record is not None
    assert record.online is True
    assert record.boot_id == "boot-1"
    assert record.first_seen == T0
    assert record.model is None  # inventory not seen yet

    later = T0 + timedelta(minutes=5)
    async with engine.begin() as conn:
        # The LWT carries the timestamp of the connect it was registered at.
        assert await apply_state(conn, "T-1", state(online=False), now=later)
    async with engine.connect() as conn:
        record = await get_terminal(conn, "T-1")
    assert record is not None
    assert record.online is False
    assert record.state_changed_at == later
    assert record.last_seen == T0  # the broker sent the LWT, not the terminal


async def test_stale_state_from_an_earlier_boot_is_ignored(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await apply_state(conn, "T-1", state(True, "boot-2", T0 + timedelta(hours=1)), now=T0)
        applied = await apply_state(conn, "T-1", state(False, "boot-1", T0), now=T0)
        record = await get_terminal(conn, "T-1")
    assert applied is False
    assert record is not None
    assert (record.online, record.boot_id) == (True, "boot-2")


async def test_inventory_before_or_after_state_ends_in_one_full_record(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await apply_inventory(conn, "T-inv-first", inventory(), now=T0)
        await apply_state(conn, "T-inv-first", state(True), now=T0)
        await apply_state(conn, "T-state-first", state(True), now=T0)
        await apply_inventory(conn, "T-state-first", inventory(serial="SN-0002"), now=T0)
        # An older retained inventory must not roll the firmware version back.
        assert not await apply_inventory(
            conn,
            "T-state-first",
            inventory("4.0.0", T0 - timedelta(days=1), serial="SN-0002"),
            now=T0,
        )
    async with engine.connect() as conn:
        records = await list_terminals(conn)
    assert [r.terminal_id for r in records] == ["T-inv-first", "T-state-first"]
    for record in records:
        assert record.online is True
        assert record.model == "V400m"
        assert record.firmware_version == "5.2.1"
        assert record.app_versions == {"payment": "3.1.0"}
        assert record.capabilities == ["printer", "contactless"]
        assert record.timezone == "Europe/Berlin"


async def test_redelivered_health_is_stored_once_and_counted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await apply_health(conn, "T-1", health(1, PrinterStatus.NO_PAPER), now=T0)
        assert not await apply_health(conn, "T-1", health(1, PrinterStatus.NO_PAPER), now=T0)
    async with engine.connect() as conn:
        record = await get_terminal(conn, "T-1")
        samples = (
            await conn.execute(sa.select(sa.func.count()).select_from(health_samples))
        ).scalar()
    assert samples == 1
    assert record is not None
    assert record.seq_duplicates == 1
    assert record.seq_gaps == 0
    assert record.health is not None
    assert record.health.printer == Printer(status=PrinterStatus.NO_PAPER)
    assert record.health_seq == 1
    assert record.health_at == T0 + timedelta(minutes=1)


async def test_gaps_are_counted_and_late_arrivals_fill_them(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for seq in (10, 11, 15):
            await apply_health(conn, "T-1", health(seq), now=T0)
        record = await get_terminal(conn, "T-1")
        assert record is not None
        assert (record.last_seq, record.seq_gaps) == (15, 3)

        # Seq 12 turns up late (replayed from the agent's outbox): one gap fewer, and the
        # latest health stays the newest report.
        await apply_health(conn, "T-1", health(12, PrinterStatus.JAM), now=T0)
        record = await get_terminal(conn, "T-1")
    assert record is not None
    assert (record.last_seq, record.seq_gaps, record.health_seq) == (15, 2, 15)
    assert record.health is not None
    assert record.health.printer == Printer(status=PrinterStatus.OK)


async def test_events_and_health_share_one_sequence(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        assert await apply_health(conn, "T-1", health(1), now=T0)
        assert await apply_event(conn, "T-1", event(2), now=T0)
        assert not await apply_event(conn, "T-1", event(2), now=T0)
        assert await apply_health(conn, "T-1", health(3), now=T0)
        record = await get_terminal(conn, "T-1")
    assert record is not None
    assert (record.last_seq, record.seq_gaps, record.seq_duplicates) == (3, 0, 1)


async def test_keyset_pagination_walks_the_fleet_once(engine: AsyncEngine) -> None:
    ids = [f"T-{n:03d}" for n in range(25)]
    async with engine.begin() as conn:
        for n, terminal_id in enumerate(reversed(ids)):
            await apply_state(conn, terminal_id, state(online=n % 2 == 0), now=T0)
    seen: list[str] = []
    after: str | None = None
    async with engine.connect() as conn:
        while page := await list_terminals(conn, limit=10, after=after):
            assert len(page) <= 10
            seen += [r.terminal_id for r in page]
            after = page[-1].terminal_id
        online = await list_terminals(conn, online=True, limit=100)
        unknown = await get_terminal(conn, "T-999")
    assert seen == ids
    assert len(online) == 13
    assert all(r.online for r in online)
    assert unknown is None


async def test_repeated_dead_letters_collapse_into_one_counted_row(engine: AsyncEngine) -> None:
    bad = b'{"seq": "x"}'
    async with engine.begin() as conn:
        for minute in range(3):
            now = T0 + timedelta(minutes=minute)
            await record_dead_letter(conn, "pos/v1/T-1/health", bad, "seq: not an int", now=now)
        await record_dead_letter(conn, "pos/v1/T-1/health", bad, "another error", now=T0)
        # Not UTF-8, a NUL byte, and far too long: kept legibly and truncated.
        junk = b"\xff\x00" + b"A" * 10_000
        await record_dead_letter(conn, "pos/v1/T-2/event", junk, "invalid JSON", now=T0)
    async with engine.connect() as conn:
        letters = await list_dead_letters(conn, limit=10)
    by_error = {letter.error: letter for letter in letters}
    assert len(letters) == 3
    repeated = by_error["seq: not an int"]
    assert (repeated.count, repeated.first_seen, repeated.last_seen) == (
        3,
        T0,
        T0 + timedelta(minutes=2),
    )
    assert repeated.payload == bad.decode()
    assert letters[0].error == "seq: not an int"  # most recently seen first
    kept = by_error["invalid JSON"]
    assert kept.payload.startswith("\\xff\\x00AAA")
    assert kept.payload.endswith("[10002 bytes in all]")
    assert len(kept.payload) < 4200
