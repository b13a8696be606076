"""The fleet list as the templates draw it: rows of cells, the summary line, the links.

Pure functions from records to small view objects; the templates (fleet.html,
fleet_section.html, fleet_table.html) do the markup, with autoescaping on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from posfleet.contract import CardReader, HealthMetrics, PrinterStatus
from posfleet.dashboard.fleet_summary import FleetCounts, OpenIncidents
from posfleet.dashboard.templating import _, relative_age
from posfleet.dashboard.terminal_listing import DEFAULT_LIMIT, TerminalPage, TerminalQuery
from posfleet.store.terminal_filters import TerminalSort
from posfleet.store.terminals import TerminalRecord

TERMINALS_PATH = "/terminals"
READER_ERROR_SHARE = 0.05
"""Above this share of failed reads (of 10 or more) a reader is failing, as its rule says."""
SEVERITY_KIND = {"critical": "bad", "error": "bad", "warning": "warn", "info": "muted"}
"""The badge colour of each incident severity."""
_MISSING = "-"
__all__ = ["relative_age"]  # re-exported: older callers import it from here


def signal_quality(rssi_dbm: int) -> str:
    """Wi-Fi signal in words, with the thresholds support staff use."""
    if rssi_dbm >= -67:
        return "good"
    if rssi_dbm >= -75:
        return "fair"
    if rssi_dbm >= -80:
        return "weak"
    return "poor"


def reader_totals(reader: CardReader) -> tuple[int, int]:
    """Reads and failed reads over chip, magstripe and contactless since the last reboot."""
    interfaces = (reader.chip, reader.magstripe, reader.contactless)
    return sum(i.reads for i in interfaces), sum(i.errors for i in interfaces)


def terminal_path(terminal_id: str) -> str:
    """The page of one terminal."""
    return f"{TERMINALS_PATH}/{quote(terminal_id, safe='')}"


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: its text, and a badge colour (``kind``) and tooltip when it has them."""

    text: str
    kind: str | None = None
    title: str | None = None
    quiet: bool = False


_NONE = Cell(_MISSING)


def _battery(health: HealthMetrics | None) -> Cell:
    if health is None or health.battery is None:
        return _NONE
    battery = health.battery
    text = f"{battery.percent:.0f}%" + (_(" charging") if battery.charging else "")
    return Cell(text, "bad") if battery.percent < 15 and not battery.charging else Cell(text)


def _printer(health: HealthMetrics | None) -> Cell:
    if health is None or health.printer is None:
        return _NONE
    status = health.printer.status
    return Cell(status.value.replace("_", " "), "ok" if status is PrinterStatus.OK else "warn")


def _network(health: HealthMetrics | None) -> Cell:
    if health is None or health.network is None:
        return _NONE
    network = health.network
    if network.rssi_dbm is None:
        return Cell(network.type.value)
    quality = signal_quality(network.rssi_dbm)
    text = f"{network.type.value} {network.rssi_dbm} dBm ({quality})"
    return Cell(text, "warn") if quality == "poor" else Cell(text)


def _host(health: HealthMetrics | None) -> Cell:
    if health is None or health.network is None:
        return _NONE
    if health.network.host_reachable:
        return Cell(_("reachable"), "ok")
    return Cell(_("unreachable"), "bad")


def _card_reader(health: HealthMetrics | None) -> Cell:
    if health is None or health.card_reader is None:
        return _NONE
    reads, errors = reader_totals(health.card_reader)
    since = _("since the terminal's last reboot")
    if errors == 0:
        if reads == 0:
            return Cell(_("no reads yet"), title=since, quiet=True)
        return Cell(_("ok"), "ok", f"{reads} reads, none failed, {since}")
    if reads == 0:
        return Cell(f"{errors} errors", "warn", since)
    share = errors / reads
    kind = "bad" if reads >= 10 and share > READER_ERROR_SHARE else "warn"
    return Cell(
        f"{share:.0%} failed ({errors}/{reads})", kind, f"{errors} of {reads} reads failed {since}"
    )


@dataclass(frozen=True, slots=True)
class Marker:
    """The link to a terminal's open incident(s) beside its id."""

    text: str
    href: str
    kind: str
    title: str


def _marker(terminal_id: str, found: OpenIncidents) -> Marker:
    kind = SEVERITY_KIND.get(found.severity, "muted")
    if found.count == 1:
        text, href = found.titles[0], f"/incidents/{found.newest_id}"
    else:
        text, href = f"{found.count} open incidents", f"{terminal_path(terminal_id)}#incidents"
    return Marker(text, href, f"badge {kind} marker", "Open: " + "; ".join(found.titles))


@dataclass(frozen=True, slots=True)
class TerminalRow:
    """One row of the fleet table."""

    record: TerminalRecord
    path: str
    age: str
    merchant: str
    """The merchant's name, or its id when it has none."""
    merchant_path: str | None
    site: str
    marker: Marker | None
    cells: tuple[Cell, ...]
    """Battery, printer, card reader, network, host."""
    css_class: str | None


def terminal_rows(
    records: Iterable[TerminalRecord],
    now: datetime,
    incidents: Mapping[str, OpenIncidents] | None = None,
) -> list[TerminalRow]:
    """The rows for ``records``; ``incidents`` (by terminal) mark and link the sick ones."""
    found = incidents or {}
    rows = []
    for record in records:
        health = record.health
        open_ones = found.get(record.terminal_id)
        marker = _marker(record.terminal_id, open_ones) if open_ones else None
        classes = [
            name for name, on in (("offline", not record.online), ("incident", marker)) if on
        ]
        merchant_id = record.merchant_id or ""
        rows.append(
            TerminalRow(
                record=record,
                path=terminal_path(record.terminal_id),
                age=relative_age(record.last_seen, now),
                merchant=record.merchant_name or merchant_id or _MISSING,
                merchant_path=f"/?{urlencode({'merchant': merchant_id})}" if merchant_id else None,
                site=record.site_name or record.site_id or _MISSING,
                marker=marker,
                cells=(
                    _battery(health),
                    _printer(health),
                    _card_reader(health),
                    _network(health),
                    _host(health),
                ),
                css_class=" ".join(classes) or None,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class Link:
    """A filter or sort link; ``current`` when it is what the page shows."""

    label: str
    href: str
    current: bool = False


def list_params(query: TerminalQuery) -> dict[str, str]:
    """The query's filters and order as URL parameters (without the page cursor)."""
    where = query.where
    given: dict[str, object] = {
        "q": where.text,
        "online": None if query.online is None else str(query.online).lower(),
        "faulty": None if where.faulty is None else str(where.faulty).lower(),
        "model": where.model,
        "firmware": where.firmware_version,
        "merchant": where.merchant_id,
        "site": where.site_id,
        "sort": None if query.sort is TerminalSort.TERMINAL_ID else query.sort.value,
        "limit": None if query.limit == DEFAULT_LIMIT else query.limit,
    }
    return {name: str(value) for name, value in given.items() if value is not None}


def list_link(query: TerminalQuery, **changes: str | None) -> str:
    """The fleet list with ``query``'s parameters, some changed (None drops one)."""
    params: dict[str, str | None] = {**list_params(query), **changes}
    kept = {name: value for name, value in params.items() if value is not None}
    return f"/?{urlencode(kept)}" if kept else "/"


def status_links(query: TerminalQuery) -> list[Link]:
    """All / Online / Offline / Faulty, keeping the other filters."""
    online = None if query.online is None else str(query.online).lower()
    faulty = query.where.faulty
    choices = (
        (_("All"), None, None),
        (_("Online"), "true", None),
        (_("Offline"), "false", None),
        (_("With open incidents"), None, "true"),
    )
    return [
        Link(
            label,
            list_link(query, online=on, faulty=sick),
            on == online and sick == (str(faulty).lower() if faulty is not None else None),
        )
        for label, on, sick in choices
    ]


SORT_LABELS = {
    TerminalSort.TERMINAL_ID: _("Terminal id"),
    TerminalSort.LAST_SEEN_DESC: _("Last seen, newest first"),
    TerminalSort.LAST_SEEN: _("Last seen, oldest first"),
    TerminalSort.SEQ_GAPS_DESC: _("Most lost reports"),
}


def sort_links(query: TerminalQuery) -> list[Link]:
    """One link per order the list offers, keeping the filters."""
    return [
        Link(
            label,
            list_link(
                query, sort=None if sort is TerminalSort.TERMINAL_ID else sort.value, after=None
            ),
            sort is query.sort,
        )
        for sort, label in SORT_LABELS.items()
    ]


def criteria(query: TerminalQuery) -> list[str]:
    """The filters in words, for the summary line."""
    where = query.where
    labelled = (
        (None, where.text),
        ("model", where.model),
        ("firmware", where.firmware_version),
        ("merchant", where.merchant_id),
        ("site", where.site_id),
    )
    return [
        f"'{value}'" if label is None else f"{label} '{value}'"
        for label, value in labelled
        if value is not None
    ]


def summary_words(fleet: FleetCounts, matching: FleetCounts | None, query: TerminalQuery) -> str:
    """The part of the summary line after the leading number (which the template bolds)."""
    if matching is None or not query.narrowed:
        return _(" terminals: ")
    shown = {None: matching.total, True: matching.online, False: matching.offline}[query.online]
    found = criteria(query)
    words = f" of {fleet.total} terminals"
    one = shown == 1 and not matching.capped
    if found:
        words += f" {'matches' if one else 'match'} {', '.join(found)}"
    if query.where.faulty:
        words += f" {'and ' if found else ''}{'has' if one else 'have'} open incidents"
    if query.online is not None:
        verb = ("and " if found or query.where.faulty else "") + ("is" if one else "are")
        words += f" {verb} {'online' if query.online else 'offline'}"
    if query.online is None and not matching.capped:
        words += ": "
    return words


@dataclass(frozen=True, slots=True)
class FleetSection:
    """Everything the live part of the fleet page shows."""

    leading: str
    words: str
    badges: FleetCounts | None
    status_links: list[Link]
    sort_links: list[Link]
    rows: list[TerminalRow]
    narrowed: bool
    next_href: str | None


def fleet_section(
    page: TerminalPage,
    counts: FleetCounts,
    query: TerminalQuery,
    now: datetime,
    *,
    matching: FleetCounts | None = None,
    incidents: Mapping[str, OpenIncidents] | None = None,
) -> FleetSection:
    """The refreshable part of the overview: counts, filters, the rows and paging."""
    narrowed = matching is not None and query.narrowed
    badges: FleetCounts | None
    if not narrowed or matching is None:
        leading, badges = str(counts.total), counts
    else:
        shown = {None: matching.total, True: matching.online, False: matching.offline}[query.online]
        leading = f"more than {shown}" if matching.capped else str(shown)
        badges = matching if query.online is None and not matching.capped else None
    return FleetSection(
        leading=leading,
        words=summary_words(counts, matching, query),
        badges=badges,
        status_links=status_links(query),
        sort_links=sort_links(query),
        rows=terminal_rows(page.items, now, incidents),
        narrowed=query.narrowed,
        next_href=list_link(query, after=page.next) if page.next else None,
    )
