"""The fleet overview as HTML: counts, filters and one table row per terminal.

Pure rendering from records to :class:`Markup`; every value goes through ``element``,
which escapes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlencode

from posfleet.contract import HealthMetrics, PrinterStatus
from posfleet.dashboard.fleet_summary import FleetCounts
from posfleet.dashboard.markup import Markup, concat, element
from posfleet.dashboard.terminal_listing import TerminalPage, TerminalQuery
from posfleet.store.terminals import TerminalRecord

COLUMNS = (
    "Terminal",
    "Status",
    "Last seen",
    "Model",
    "Firmware",
    "Merchant",
    "Site",
    "Battery",
    "Printer",
    "Network",
    "Host",
)
_MISSING = "-"


def relative_age(then: datetime, now: datetime) -> str:
    """``then`` as a short age: ``12 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    seconds = int((now - then).total_seconds())
    if seconds < 1:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def signal_quality(rssi_dbm: int) -> str:
    """Wi-Fi signal in words, with the thresholds support staff use."""
    if rssi_dbm >= -67:
        return "good"
    if rssi_dbm >= -75:
        return "fair"
    if rssi_dbm >= -80:
        return "weak"
    return "poor"


def badge(text: str, kind: str) -> Markup:
    """A small coloured label; ``kind`` picks the colour (ok, bad, warn, muted)."""
    return element("span", text, class_=f"badge {kind}")


def presence_badge(online: bool) -> Markup:
    """The online / offline badge of a terminal."""
    return badge("online", "ok") if online else badge("offline", "bad")


def _battery(health: HealthMetrics | None) -> object:
    if health is None or health.battery is None:
        return _MISSING
    battery = health.battery
    text = f"{battery.percent:.0f}%" + (" charging" if battery.charging else "")
    if battery.percent < 15 and not battery.charging:
        return badge(text, "bad")
    return text


def _printer(health: HealthMetrics | None) -> object:
    if health is None or health.printer is None:
        return _MISSING
    status = health.printer.status
    return badge(status.value.replace("_", " "), "ok" if status is PrinterStatus.OK else "warn")


def _network(health: HealthMetrics | None) -> object:
    if health is None or health.network is None:
        return _MISSING
    network = health.network
    if network.rssi_dbm is None:
        return network.type.value
    quality = signal_quality(network.rssi_dbm)
    text = f"{network.type.value} {network.rssi_dbm} dBm ({quality})"
    return badge(text, "warn") if quality == "poor" else text


def _host(health: HealthMetrics | None) -> object:
    if health is None or health.network is None:
        return _MISSING
    return (
        badge("reachable", "ok") if health.network.host_reachable else badge("unreachable", "bad")
    )


def terminal_row(record: TerminalRecord, now: datetime) -> Markup:
    """One table row: identity, presence, inventory and the latest health."""
    health = record.health
    cells: Iterable[object] = (
        element("code", record.terminal_id),
        presence_badge(record.online),
        element("time", relative_age(record.last_seen, now), datetime=record.last_seen.isoformat()),
        record.model or _MISSING,
        record.firmware_version or _MISSING,
        record.merchant_id or _MISSING,
        record.site_id or _MISSING,
        _battery(health),
        _printer(health),
        _network(health),
        _host(health),
    )
    return element(
        "tr",
        *(element("td", cell) for cell in cells),
        class_=None if record.online else "offline",
    )


def _link(query: TerminalQuery, **changes: str | None) -> str:
    params = {"online": None if query.online is None else str(query.online).lower()}
    params.update(changes)
    kept = {name: value for name, value in params.items() if value is not None}
    return f"/?{urlencode(kept)}" if kept else "/"


def _filters(query: TerminalQuery) -> Markup:
    choices = (("All", None), ("Online", "true"), ("Offline", "false"))
    current = None if query.online is None else str(query.online).lower()
    links = (
        element(
            "a",
            label,
            href=f"/?{urlencode({'online': value})}" if value else "/",
            aria_current="page" if value == current else None,
        )
        for label, value in choices
    )
    return element("nav", *links, class_="filters", aria_label="Filter by status")


def _summary(counts: FleetCounts) -> Markup:
    return element(
        "p",
        element("strong", counts.total),
        " terminals: ",
        badge(f"{counts.online} online", "ok"),
        " ",
        badge(f"{counts.offline} offline", "bad" if counts.offline else "muted"),
        class_="summary",
    )


def fleet_section(
    page: TerminalPage, counts: FleetCounts, query: TerminalQuery, now: datetime
) -> Markup:
    """The refreshable part of the overview: counts, filters, the table and paging."""
    head = element("thead", element("tr", *(element("th", name, scope="col") for name in COLUMNS)))
    if page.items:
        rows = concat(terminal_row(record, now) for record in page.items)
    else:
        empty = (
            "No terminal matches." if query.online is not None else "No terminal has reported yet."
        )
        rows = element("tr", element("td", empty, colspan=len(COLUMNS)))
    table = element("table", head, element("tbody", rows), class_="fleet")
    paging = (
        element("p", element("a", "Next page", href=_link(query, after=page.next)), class_="paging")
        if page.next
        else None
    )
    return concat([_summary(counts), _filters(query), table, paging])
