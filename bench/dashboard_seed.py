"""The fleet bench/dashboard.py measures: terminals, merchants, samples, rollups, incidents.

Rows are written straight into the tables (the ingest path has its own benches), in
large batches; on PostgreSQL the samples go in with COPY. Everything is reproducible
from fixed seeds, so two runs measure the same data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store.merchants import merchant_search_text
from posfleet.store.schema import (
    health_rollups,
    health_samples,
    incidents,
    merchants,
    terminal_search,
    terminals,
)
from posfleet.store.terminal_search import MerchantText, TerminalText

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
BATCH = 10_000
_LATIN = ("Bäckerei", "Café", "Apotheke", "Buchhandlung", "Kiosk", "Blumen", "Metzgerei")
_CHINESE = ("饺子馆", "超市", "茶馆", "面馆", "书店", "药房", "花店")
_PLACES = ("Sonnenschein", "am Markt", "Morgenrot", "Nord", "Zentrum", "am Dom", "Ost")
_CITIES = ("Berlin", "Hamburg", "München", "Köln", "Wien")
_SEVERITIES = ("info", "warning", "error", "critical")
_MODELS = ("V400m", "A920", "Move5000", "S920", "P400", "Desk3500")


@dataclass(frozen=True, slots=True)
class Fleet:
    """What was seeded, for the queries to aim at."""

    terminals: int
    merchants: int
    samples: int
    charted: list[str]
    """Terminals with 7 days of hourly rollups (the terminal pages opened)."""
    merchant_parts: list[str]
    """Substrings of merchant names, each found in a few merchants."""


def terminal_id(n: int) -> str:
    """The id of the ``n``-th seeded terminal."""
    return f"T-{n:06d}"


def _merchant_name(n: int) -> str:
    if n % 3 == 0:
        return f"{_PLACES[n % 7]}{_CHINESE[n % 7]} {n:05d}"
    return f"{_LATIN[n % 7]} {_PLACES[(n // 7) % 7]} {n:05d}"


def _merchant_rows(count: int) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        mid, name, phone = f"M-{n:05d}", _merchant_name(n), f"+49 30 {5550000 + n}"
        city = _CITIES[n % len(_CITIES)]
        rows.append(
            {
                "merchant_id": mid,
                "name": name,
                "contact_name": f"Contact {n}",
                "contact_phone": phone,
                "city": city,
                "search_text": merchant_search_text(mid, name, f"Contact {n}", phone, city),
                "name_source": "staff",
                "updated_at": NOW,
                "updated_by": "bench",
            }
        )
    return rows


def _terminal_rows(
    count: int, merchant_count: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    rng = random.Random(7)
    for n in range(count):
        tid, m = terminal_id(n), n % merchant_count
        model, serial = _MODELS[n % len(_MODELS)], f"SN{n:08d}"
        merchant_id, site_id = f"M-{m:05d}", f"S-{n % 12000:05d}"
        registry = {
            "terminal_id": tid,
            "model": model,
            "serial": serial,
            "firmware_version": f"5.{n % 9}.0",
            "merchant_id": merchant_id,
            "site_id": site_id,
            "online": rng.random() < 0.85,
            "first_seen": NOW - timedelta(days=30),
            "last_seen": NOW - timedelta(seconds=rng.randrange(86_400)),
            "seq_gaps": rng.randrange(5),
            "app_versions": {"payment": "3.1.0"},
            "capabilities": ["printer", "contactless"],
        }
        name = _merchant_name(m)
        site = f"Filiale {n % 12000}"
        phone, city = f"+49 30 {5550000 + m}", _CITIES[m % len(_CITIES)]
        merchant = MerchantText(name, f"Contact {m}", phone, city)
        fields = TerminalText(tid, serial, model, merchant_id, name, site_id, site)
        text = fields.text(merchant)
        yield (
            registry,
            {
                "terminal_id": tid,
                "merchant_name": name,
                "site_name": site,
                "search_text": text,
            },
        )


def _metrics(rng: random.Random) -> dict[str, Any]:
    return {
        "battery": {"percent": rng.randrange(5, 100), "charging": rng.random() < 0.3},
        "temperature_c": round(rng.uniform(25, 55), 1),
        "printer": {"status": "ok"},
        "network": {"type": "wifi", "rssi_dbm": rng.randrange(-85, -50), "host_reachable": True},
    }


async def _insert(engine: AsyncEngine, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        async with engine.begin() as conn:
            await conn.execute(table.insert(), rows[start : start + BATCH])


async def _samples(engine: AsyncEngine, count: int, per_terminal: int) -> int:
    """``per_terminal`` samples each, hourly back from now; the newest is the latest health."""
    rng = random.Random(11)
    stored = 0
    postgres = engine.dialect.name == "postgresql"
    for start in range(0, count, BATCH // per_terminal):
        rows: list[dict[str, Any]] = []
        for n in range(start, min(count, start + BATCH // per_terminal)):
            for k in range(per_terminal):
                stored += 1
                rows.append(
                    {
                        "terminal_id": terminal_id(n),
                        "seq": k + 1,
                        "ts": NOW - timedelta(hours=per_terminal - k),
                        "metrics": _metrics(rng),
                        "stored_id": stored,
                    }
                )
        async with engine.begin() as conn:
            if postgres:
                raw = (await conn.get_raw_connection()).driver_connection
                assert raw is not None
                records = [
                    (r["terminal_id"], r["seq"], r["ts"], json.dumps(r["metrics"]), r["stored_id"])
                    for r in rows
                ]
                await raw.copy_records_to_table(
                    "health_samples",
                    records=records,
                    columns=["terminal_id", "seq", "ts", "metrics", "stored_id"],
                )
            else:
                await conn.execute(health_samples.insert(), rows)
            ids = range(start, min(count, start + BATCH // per_terminal))
            await conn.execute(
                terminals.update()
                .where(terminals.c.terminal_id == sa.bindparam("tid"))
                .values(health_seq=per_terminal, health_at=NOW - timedelta(hours=1)),
                [{"tid": terminal_id(n)} for n in ids],
            )
    return stored


def _rollups(charted: list[str]) -> list[dict[str, Any]]:
    rng = random.Random(13)
    rows = []
    for tid in charted:
        for h in range(7 * 24):
            rows.append(
                {
                    "terminal_id": tid,
                    "hour": NOW - timedelta(hours=h),
                    "samples": 120,
                    "temperature_sum": 120 * rng.uniform(25, 50),
                    "temperature_count": 120,
                    "temperature_max": rng.uniform(40, 60),
                    "battery_min": rng.uniform(10, 90),
                    "rssi_min": rng.randrange(-85, -55),
                    "reader_reads_max": 1000 + h * 10,
                    "reader_errors_max": h // 3,
                    "declined_max": h // 5,
                }
            )
    return rows


def _incidents(count: int, terminal_count: int) -> list[dict[str, Any]]:
    rng = random.Random(17)
    rows: list[dict[str, Any]] = []
    for n in range(count):
        tid = terminal_id(rng.randrange(terminal_count))
        state = "open" if n % 4 == 0 else "resolved"
        # Every severity among the open ones (n % 4 alone would make them all alike).
        severity = _SEVERITIES[(n // 4) % len(_SEVERITIES)]
        rule = f"rule.{n % 9}"
        opened = NOW - timedelta(minutes=rng.randrange(60 * 24 * 30))
        rows.append(
            {
                "kind": "terminal",
                "terminal_id": tid,
                "rule_id": rule,
                "open_key": f"{tid}/{rule}/{n}" if state == "open" else None,
                "state": state,
                "title": "Card reads failing",
                "component": "card_reader",
                "severity": severity,
                "escalation": "swap",
                "cause": "More than 5% of card reads failed.",
                "remedy": ["Clean the reader"],
                "facts": {},
                "opened_at": opened,
                "last_seen_at": opened,
                "updated_at": opened,
                "resolved_at": None if state == "open" else opened + timedelta(hours=2),
            }
        )
    return rows


async def seed(
    engine: AsyncEngine, terminal_count: int, samples: int, incident_count: int | None = None
) -> Fleet:
    """Fill a migrated, empty database; ``samples`` health samples in all.

    ``incident_count`` incidents over the last 30 days, a quarter of them open (default:
    one per 20 terminals).
    """
    merchant_count = max(1, terminal_count // 20)
    await _insert(engine, merchants, _merchant_rows(merchant_count))
    registry, search = zip(*_terminal_rows(terminal_count, merchant_count), strict=True)
    await _insert(engine, terminals, list(registry))
    await _insert(engine, terminal_search, list(search))
    stored = await _samples(engine, terminal_count, max(1, samples // terminal_count))
    charted = [terminal_id(n * (terminal_count // 50)) for n in range(50)]
    await _insert(engine, health_rollups, _rollups(charted))
    if incident_count is None:
        incident_count = terminal_count // 20
    await _insert(engine, incidents, _incidents(incident_count, terminal_count))
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    parts = ["饺子馆 0", "morgenrot 01", "apotheke nord", "超市 00", "kiosk am markt 02"]
    return Fleet(terminal_count, merchant_count, stored, charted, parts)
