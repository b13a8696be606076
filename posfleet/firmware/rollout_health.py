"""Business-health figures of updated terminals, before and after, from stored telemetry.

The health gate (:mod:`posfleet.firmware.rollout_gate`) compares a wave's updated
terminals over the soak window with **the same terminals' own baseline** before their
update. For each terminal:

- ``after`` runs from its Action's end (``finished_at``: the agent confirmed the new
  slot) to the end of the wave's soak;
- ``before`` is a window of the same length that ends where its Action began
  (``created_at``), so the update's own reboot is in neither, and reboot counts of the
  two windows compare like with like.

The counts come from the raw health samples (``health_samples``; kept for days, longer
than any soak): card reads and failed reads of the chip, magstripe and contactless
interfaces, approved and declined payments, and reboots. The counters a terminal
reports are cumulative since its last reboot (payments since the last settlement), so a
window's count is the sum of the rises between consecutive samples inside it, a value
below the one before counting as a restart from zero; a reboot is an ``uptime_s`` below
the one before. The first sample of each window is its anchor. A terminal is judged only
when it has at least two samples in each window; the others are left out of both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.firmware.rollout_gate import evaluate
from posfleet.firmware.rollout_model import GateTolerances, GateVerdict, HealthFigures
from posfleet.store.schema import health_samples

CHUNK_TERMINALS = 200
"""Terminals whose samples one query reads: a big wave is read in pieces."""

_INTERFACES = ("chip", "magstripe", "contactless")
_COUNTERS = ("reads", "read_errors", "approved", "declined")


@dataclass(frozen=True, slots=True)
class UpdatedTerminal:
    """One terminal a wave updated: when its update began and when it was confirmed."""

    terminal_id: str
    update_began: datetime
    """Its Action's ``created_at``: the baseline ends here."""
    update_done: datetime
    """Its Action's ``finished_at``: the soak window starts here."""


@dataclass(frozen=True, slots=True)
class TerminalFigures:
    """One terminal's figures before and after its update."""

    terminal_id: str
    before: HealthFigures
    after: HealthFigures

    def verdict(self, tolerances: GateTolerances) -> GateVerdict:
        """The gate's verdict on this terminal alone (for the incident's children)."""
        return evaluate(self.before, self.after, replace(tolerances, min_terminals=1))


@dataclass(frozen=True, slots=True)
class WaveHealth:
    """The wave's figures: its judged terminals summed, and each of them."""

    before: HealthFigures
    after: HealthFigures
    terminals: tuple[TerminalFigures, ...]
    without_figures: tuple[str, ...]
    """Updated terminals left out: fewer than two samples in one of the windows."""


def _sample_columns() -> list[sa.ColumnElement[Any]]:
    metrics = health_samples.c.metrics
    columns: list[sa.ColumnElement[Any]] = []
    for interface in _INTERFACES:
        for counter in ("reads", "errors"):
            path = ("card_reader", interface, counter)
            columns.append(metrics[path].as_integer().label(f"{interface}_{counter}"))
    columns.append(metrics[("transactions", "approved")].as_integer().label("approved"))
    columns.append(metrics[("transactions", "declined")].as_integer().label("declined"))
    columns.append(metrics[("uptime_s",)].as_integer().label("uptime"))
    return columns


@dataclass(slots=True)
class _Sample:
    ts: datetime
    counters: dict[str, int | None]
    uptime: int | None


def _sample_of(row: sa.Row[Any]) -> _Sample:
    data = row._mapping

    def reader(counter: str) -> int | None:
        values = [data[f"{i}_{counter}"] for i in _INTERFACES]
        known = [int(v) for v in values if v is not None]
        return sum(known) if known else None

    counters: dict[str, int | None] = {
        "reads": reader("reads"),
        "read_errors": reader("errors"),
        "approved": None if data["approved"] is None else int(data["approved"]),
        "declined": None if data["declined"] is None else int(data["declined"]),
    }
    uptime = data["uptime"]
    return _Sample(data["ts"], counters, None if uptime is None else int(uptime))


def _rise(previous: int | None, current: int | None) -> int:
    """How much a cumulative counter grew; a drop is a restart from zero."""
    if current is None or previous is None:
        return 0
    return current - previous if current >= previous else current


def figures_of(samples: Sequence[_Sample]) -> HealthFigures | None:
    """One terminal's counts over its samples of one window (oldest first); None if < 2."""
    if len(samples) < 2:
        return None
    totals = dict.fromkeys(_COUNTERS, 0)
    reboots = 0
    for previous, current in pairwise(samples):
        for name in _COUNTERS:
            totals[name] += _rise(previous.counters[name], current.counters[name])
        if (
            previous.uptime is not None
            and current.uptime is not None
            and current.uptime < previous.uptime
        ):
            reboots += 1
    # A restart between two reads can make errors rise more than reads did (the error
    # counter had not reset yet); keep the figures consistent.
    totals["read_errors"] = min(totals["read_errors"], totals["reads"])
    return HealthFigures(terminals=1, reboots=reboots, **totals)


def add_up(figures: Iterable[HealthFigures]) -> HealthFigures:
    """The sum of several terminals' figures."""
    total = dict.fromkeys(("terminals", *_COUNTERS, "reboots"), 0)
    for one in figures:
        for name in total:
            total[name] += getattr(one, name)
    return HealthFigures(**total)


async def wave_health(
    conn: AsyncConnection, updated: Sequence[UpdatedTerminal], *, until: datetime
) -> WaveHealth:
    """The before and after figures of ``updated``, the soak window ending at ``until``."""
    judged: list[TerminalFigures] = []
    missing: list[str] = []
    for start in range(0, len(updated), CHUNK_TERMINALS):
        chunk = []
        for terminal in updated[start : start + CHUNK_TERMINALS]:
            if terminal.update_done < until:
                chunk.append(terminal)
            else:
                missing.append(terminal.terminal_id)
        if not chunk:
            continue
        samples = await _samples(conn, chunk, until=until)
        for terminal in chunk:
            span = until - terminal.update_done
            mine = samples.get(terminal.terminal_id, [])
            before_from = terminal.update_began - span
            before = figures_of([s for s in mine if before_from <= s.ts < terminal.update_began])
            after = figures_of([s for s in mine if terminal.update_done < s.ts <= until])
            if before is None or after is None:
                missing.append(terminal.terminal_id)
                continue
            judged.append(TerminalFigures(terminal.terminal_id, before, after))
    return WaveHealth(
        before=add_up(t.before for t in judged),
        after=add_up(t.after for t in judged),
        terminals=tuple(judged),
        without_figures=tuple(missing),
    )


async def _samples(
    conn: AsyncConnection, chunk: Sequence[UpdatedTerminal], *, until: datetime
) -> dict[str, list[_Sample]]:
    earliest = min(u.update_began - (until - u.update_done) for u in chunk)
    c = health_samples.c
    query = (
        sa.select(c.terminal_id, c.ts, *_sample_columns())
        .where(
            c.terminal_id.in_(sorted({u.terminal_id for u in chunk})),
            c.ts >= earliest,
            c.ts <= until,
        )
        .order_by(c.terminal_id, c.ts)
    )
    found: dict[str, list[_Sample]] = {}
    for row in await conn.execute(query):
        found.setdefault(str(row.terminal_id), []).append(_sample_of(row))
    return found
