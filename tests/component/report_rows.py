"""A small seeded dataset for the reports, with figures worked out by hand below.

Period: 2026-03-02 (a Monday) to 2026-03-21 inclusive, so three ISO weeks (the third
empty). Six terminal incidents fall in it; one before, one after and a fleet incident
must not count.

| # | terminal | rule | sev | opened | ack after | resolved after | assignee |
|---|---|---|---|---|---|---|---|
| 1 | T-1 | printer.paper_out | warning | Mar 2 09:00 | 10 min | 60 min | alice |
| 2 | T-1 | printer.jam | error | Mar 3 09:00 | 20 min | 120 min | alice |
| 3 | T-1 | printer.paper_out | warning | Mar 9 10:00 | 30 min | 90 min | bob |
| 4 | T-2 | card_reader.errors | error | Mar 4 12:00 | 5 min | - | bob |
| 5 | T-3 | network.host_unreachable | critical | Mar 10 08:00 | - | 30 min | - |
| 6 | T-2 | printer.paper_out | warning | Mar 11 15:00 | - | - | - |

MTTA = (600 + 1200 + 1800 + 300) / 4 = 975 s; MTTR = (3600 + 7200 + 5400 + 1800) / 4 = 4500 s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Battery,
    CardReader,
    HealthMetrics,
    HealthReport,
    Inventory,
    Printer,
    PrinterStatus,
    State,
)
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.schema import incidents

FROM = "2026-03-02"
TO = "2026-03-21"
MIN = timedelta(minutes=1)

_TERMINALS = {
    # terminal: (model, firmware, merchant, site)
    "T-1": ("V400m", "5.2.1", "M-1", "S-1"),
    "T-2": ("V400m", "5.3.0", "M-2", "S-2"),
    "T-3": ("P400", "5.3.0", "M-2", "S-3"),
}

_INCIDENTS = [
    # terminal, rule, component, severity, opened, ack after, resolved after, assignee
    ("T-1", "printer.paper_out", "printer", "warning", (3, 2, 9), 10, 60, "alice"),
    ("T-1", "printer.jam", "printer", "error", (3, 3, 9), 20, 120, "alice"),
    ("T-1", "printer.paper_out", "printer", "warning", (3, 9, 10), 30, 90, "bob"),
    ("T-2", "card_reader.errors", "card_reader", "error", (3, 4, 12), 5, None, "bob"),
    ("T-3", "network.host_unreachable", "network", "critical", (3, 10, 8), None, 30, None),
    ("T-2", "printer.paper_out", "printer", "warning", (3, 11, 15), None, None, None),
    # Outside the period: would make T-1's printer four incidents, and week counts wrong.
    ("T-1", "printer.jam", "printer", "error", (2, 20, 9), 5, 10, "alice"),
    ("T-1", "printer.jam", "printer", "error", (3, 25, 9), 5, 10, "alice"),
]

WEAR = {
    # terminal: metrics; limits: lines 2,000,000, insertions 500,000, cycles 500, health < 60
    "T-1": HealthMetrics(printer=Printer(status=PrinterStatus.OK, lines_printed=1_900_000)),
    "T-2": HealthMetrics(card_reader=CardReader(insertions_total=400_000)),
    "T-3": HealthMetrics(
        battery=Battery(percent=80, charging=False, cycles=450, health_percent=70)
    ),
    "T-4": HealthMetrics(printer=Printer(status=PrinterStatus.OK, lines_printed=1_000_000)),
    "T-5": HealthMetrics(battery=Battery(percent=50, charging=True, cycles=520)),
}
"""Worn, most first: T-5 battery 104 %, T-1 printer 95 %, T-3 battery cycles 90 %, T-2
reader 80 %; T-3's health (75 %) and T-4's printer (50 %) stay under 80 %."""


def _at(month_day_hour: tuple[int, int, int]) -> datetime:
    month, day, hour = month_day_hour
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _row(n: int, item: tuple[object, ...]) -> dict[str, object]:
    terminal, rule, component, severity, opened, acked, resolved, assignee = item
    assert isinstance(terminal, str) and isinstance(opened, tuple)
    model, firmware, merchant, site = _TERMINALS[terminal]
    start = _at(opened)
    ack_at = start + MIN * acked if isinstance(acked, int) else None
    res_at = start + MIN * resolved if isinstance(resolved, int) else None
    state = "resolved" if res_at else "acknowledged" if ack_at else "open"
    return {
        "kind": "terminal",
        "terminal_id": terminal,
        "rule_id": rule,
        "open_key": None if res_at else f"{terminal}/{rule}/{n}",
        "state": state,
        "title": str(rule),
        "component": component,
        "severity": severity,
        "escalation": "remote_fix",
        "cause": "",
        "remedy": [],
        "facts": {},
        "model": model,
        "firmware_version": firmware,
        "site_id": site,
        "merchant_id": merchant,
        "opened_at": start,
        "last_seen_at": start,
        "acknowledged_at": ack_at,
        "resolved_at": res_at,
        "updated_at": res_at or ack_at or start,
        "assignee": assignee,
    }


async def seed_reports(engine: AsyncEngine) -> None:
    """The incidents above, a fleet incident, and five terminals' wear counters."""
    now = datetime(2026, 3, 12, tzinfo=UTC)
    async with engine.begin() as conn:
        rows = [_row(n, item) for n, item in enumerate(_INCIDENTS, 1)]
        fleet = _row(99, _INCIDENTS[0]) | {"kind": "fleet", "terminal_id": None}
        await conn.execute(sa.insert(incidents), [*rows, fleet])
        for n, (tid, metrics) in enumerate(sorted(WEAR.items()), 1):
            state = State(online=True, agent_version="1.0.0", boot_id="b1", ts=now)
            await apply_state(conn, tid, state, now=now)
            model, firmware, merchant, site = _TERMINALS.get(tid, ("V400m", "5.2.1", "M-9", "S-9"))
            inventory = Inventory(
                model=model,
                serial=f"SN-{n}",
                firmware_version=firmware,
                agent_version="1.0.0",
                merchant_id=merchant,
                site_id=site,
                ts=now,
            )
            await apply_inventory(conn, tid, inventory, now=now)
            report = HealthReport(seq=1, ts=now, interval_s=60, metrics=metrics)
            await apply_health(conn, tid, report, now=now)
