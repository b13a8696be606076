"""Filters, sort orders and keyset pages of the fleet list.

Every sort order ends in ``terminal_id``, so a page boundary is one row value and the
next page is ``WHERE (sort key, terminal_id) > (that row's)``, an index range scan on
``(column, terminal_id)`` rather than an OFFSET that re-reads every earlier row. The
cursor stays the terminal id for every order; its sort key is looked up by primary key.
Only NOT NULL columns are sortable, so a row value never compares with NULL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from posfleet.store.incidents import IncidentState
from posfleet.store.schema import incidents, terminals
from posfleet.store.terminal_search import text_condition

_UNRESOLVED = (IncidentState.OPEN.value, IncidentState.ACKNOWLEDGED.value)


class TerminalSort(StrEnum):
    """The orders the fleet list offers; a leading ``-`` means newest or largest first."""

    TERMINAL_ID = "terminal_id"
    LAST_SEEN = "last_seen"
    LAST_SEEN_DESC = "-last_seen"
    SEQ_GAPS_DESC = "-seq_gaps"

    @property
    def column(self) -> sa.Column[Any]:
        """The column ordered by, before the ``terminal_id`` tie-breaker."""
        return terminals.c[self.value.lstrip("-")]

    @property
    def descending(self) -> bool:
        """True for newest or largest first."""
        return self.value.startswith("-")


@dataclass(frozen=True, slots=True)
class TerminalFilter:
    """What to narrow the fleet list to; every given field must match (AND).

    ``text`` matches a case-insensitive substring of the terminal id, serial number,
    model, merchant (id, name, contact, phone) or site (id, name); see
    :mod:`posfleet.store.terminal_search`. ``faulty`` keeps the terminals with an
    unresolved incident (True) or those without (False).
    """

    model: str | None = None
    firmware_version: str | None = None
    merchant_id: str | None = None
    site_id: str | None = None
    text: str | None = None
    faulty: bool | None = None

    def conditions(self, dialect: str, *, counting: bool = False) -> list[sa.ColumnElement[bool]]:
        """The WHERE conditions (the same on ``sqlite`` and ``postgresql``).

        ``counting``: for a count of every match rather than a page (see
        :func:`~posfleet.store.terminal_search.text_condition`).
        """
        c = terminals.c
        found: list[sa.ColumnElement[bool]] = []
        for name in ("model", "firmware_version", "merchant_id", "site_id"):
            value = getattr(self, name)
            if value is not None:
                found.append(c[name] == value)
        if self.text:
            found.append(text_condition(self.text, counting=counting))
        if self.faulty is not None:
            # The few terminals with an open incident, read once from incidents' state index.
            sick = sa.select(incidents.c.terminal_id).where(
                incidents.c.state.in_(_UNRESOLVED), incidents.c.terminal_id.is_not(None)
            )
            found.append(c.terminal_id.in_(sick) if self.faulty else c.terminal_id.not_in(sick))
        return found


def keyset_page(query: sa.Select[Any], sort: TerminalSort, after: str | None) -> sa.Select[Any]:
    """Order ``query`` by ``sort`` and start it after the terminal ``after``."""
    key = terminals.c.terminal_id
    if sort is TerminalSort.TERMINAL_ID:
        if after is not None:
            query = query.where(key > after)
        return query.order_by(key)
    column = sort.column
    if after is not None:
        boundary = sa.select(column).where(key == after).scalar_subquery()
        row, start = sa.tuple_(column, key), sa.tuple_(boundary, sa.literal(after))
        query = query.where(row < start if sort.descending else row > start)
    if sort.descending:
        return query.order_by(column.desc(), key.desc())
    return query.order_by(column, key)
