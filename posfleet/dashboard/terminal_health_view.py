"""A terminal's latest health laid out as support reads it, each item ok / warning / fault.

Pure: a :class:`~posfleet.contract.HealthMetrics` in, a :class:`HealthLayout` out, which
both the terminal page and ``GET /api/v1/terminals/{id}/health`` show. The classes follow
the rule pack (``posfleet/diagnostics/rules``): *fault* is past the threshold at which a
rule opens an incident, *warning* is inside the band between a rule's clear and its
trigger threshold (or a lesser sign, like paper running low), so the colours on the page
agree with the incidents listed beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum

import pydantic

from posfleet.contract import HealthMetrics, PrinterStatus, ReaderCounters
from posfleet.dashboard.templating import _


class HealthStatus(StrEnum):
    """How one item of a terminal's health looks to support."""

    OK = "ok"
    WARNING = "warning"
    FAULT = "fault"
    UNKNOWN = "unknown"
    """The terminal does not measure it (or sent no report)."""


_RANK = {
    HealthStatus.UNKNOWN: 0,
    HealthStatus.OK: 1,
    HealthStatus.WARNING: 2,
    HealthStatus.FAULT: 3,
}

# Thresholds, from the rule pack (trigger = fault, clear = the end of the warning band).
READER_MIN_READS = 10
READER_MIN_ERRORS = 5
READER_FAULT_SHARE = 0.05
READER_WARNING_SHARE = 0.02
BATTERY_FAULT_PERCENT = 15.0
BATTERY_WARNING_PERCENT = 20.0
BATTERY_WORN_PERCENT = 60.0
BATTERY_RATED_CYCLES = 500
TEMPERATURE_FAULT_C = 60.0
TEMPERATURE_WARNING_C = 55.0
USED_FAULT_PERCENT = 90.0
USED_WARNING_PERCENT = 85.0
CLOCK_FAULT_S = 60.0
CLOCK_WARNING_S = 5.0
DUKPT_FAULT_REMAINING = 50_000
DUKPT_WARNING_REMAINING = 100_000
KEY_FAULT_DAYS = 30
KEY_WARNING_DAYS = 60
RSSI_FAULT_DBM = -80
RSSI_WARNING_DBM = -75
TLS_WARNING_FAILURES = 3


class HealthItem(pydantic.BaseModel):
    """One line of the health panel: what it is, how it looks and the figures."""

    model_config = pydantic.ConfigDict(frozen=True)

    key: str
    """Stable machine name: ``printer``, ``reader_chip``, ``host``, ``battery``, ..."""
    label: str
    status: HealthStatus
    value: str
    """The reading in words: ``81% on battery``, ``jam``, ``-82 dBm (poor)``."""
    details: list[str] = []
    """Further figures and what the status means, one sentence each."""


class HealthLayout(pydantic.BaseModel):
    """A terminal's latest health report, item by item."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    reported_at: datetime | None
    """When the terminal took the report; None if it has sent none."""
    status: HealthStatus
    """The worst of the items."""
    items: list[HealthItem]


def _item(
    key: str, label: str, status: HealthStatus, value: str, details: list[str] | None = None
) -> HealthItem:
    return HealthItem(key=key, label=label, status=status, value=value, details=details or [])


def _unknown(key: str, label: str) -> HealthItem:
    return _item(key, label, HealthStatus.UNKNOWN, _("not reported"))


def _printer(health: HealthMetrics) -> HealthItem:
    if health.printer is None:
        return _unknown("printer", _("Printer"))
    status = health.printer.status
    if status is PrinterStatus.OK:
        shown = HealthStatus.OK
    elif status is PrinterStatus.PAPER_LOW:
        shown = HealthStatus.WARNING
    else:
        shown = HealthStatus.FAULT
    lines = health.printer.lines_printed
    details = [_("%(n)s lines printed") % {"n": f"{lines:,}"}] if lines is not None else []
    return _item("printer", _("Printer"), shown, status.value.replace("_", " "), details)


def reader_status(counters: ReaderCounters) -> HealthStatus:
    """A reader interface's class by its counters since the terminal's last restart."""
    reads, errors = counters.reads, counters.errors
    if reads == 0:
        return HealthStatus.OK
    share = errors / reads
    if reads >= READER_MIN_READS and errors >= READER_MIN_ERRORS and share > READER_FAULT_SHARE:
        return HealthStatus.FAULT
    if errors and share > READER_WARNING_SHARE:
        return HealthStatus.WARNING
    return HealthStatus.OK


def _readers(health: HealthMetrics) -> list[HealthItem]:
    names = (
        ("chip", _("Card reader: chip")),
        ("magstripe", _("Card reader: magstripe")),
        ("contactless", _("Card reader: contactless")),
    )
    reader = health.card_reader
    if reader is None:
        return [_unknown(f"reader_{key}", label) for key, label in names]
    items = []
    for key, label in names:
        counters: ReaderCounters = getattr(reader, key)
        if counters.reads == 0:
            value = _("no reads since the last restart")
        else:
            value = _("%(errors)s of %(reads)s reads failed (%(share)s)") % {
                "errors": counters.errors,
                "reads": counters.reads,
                "share": f"{counters.errors / counters.reads:.0%}",
            }
        items.append(_item(f"reader_{key}", label, reader_status(counters), value))
    if reader.insertions_total is not None:
        total = _("%(n)s card insertions over its life") % {"n": f"{reader.insertions_total:,}"}
        items[0] = items[0].model_copy(update={"details": [total]})
    return items


def _host(health: HealthMetrics) -> HealthItem:
    network = health.network
    if network is None:
        return _unknown("host", _("Acquirer host"))
    details = []
    if network.latency_ms is not None:
        details.append(_("%(ms)s ms to the host") % {"ms": f"{network.latency_ms:.0f}"})
    if network.host_reachable:
        return _item("host", _("Acquirer host"), HealthStatus.OK, _("reachable"), details)
    return _item("host", _("Acquirer host"), HealthStatus.FAULT, _("unreachable"), details)


def signal_words(rssi_dbm: int) -> str:
    """Wi-Fi signal in the words support staff use (DOMAIN.md's bands)."""
    if rssi_dbm >= -67:
        return _("good")
    if rssi_dbm >= RSSI_WARNING_DBM:
        return _("fair")
    if rssi_dbm >= RSSI_FAULT_DBM:
        return _("weak")
    return _("poor")


def _network(health: HealthMetrics) -> HealthItem:
    network = health.network
    if network is None:
        return _unknown("network", _("Network"))
    status = HealthStatus.OK
    value = network.type.value
    details = []
    if network.rssi_dbm is not None:
        rssi = network.rssi_dbm
        value = f"{value}, {rssi} dBm ({signal_words(rssi)})"
        if rssi < RSSI_FAULT_DBM:
            status = HealthStatus.FAULT
        elif rssi < RSSI_WARNING_DBM:
            status = HealthStatus.WARNING
    if network.tls_failures:
        details.append(_("%(n)s TLS failures since the last restart") % {"n": network.tls_failures})
        if network.tls_failures >= TLS_WARNING_FAILURES:
            status = max(status, HealthStatus.WARNING, key=_RANK.__getitem__)
    return _item("network", _("Network"), status, value, details)


def _battery(health: HealthMetrics) -> HealthItem:
    battery = health.battery
    if battery is None:
        return _unknown("battery", _("Battery"))
    state = _("charging") if battery.charging else _("on battery")
    value = f"{battery.percent:.0f}% {state}"
    status = HealthStatus.OK
    if not battery.charging and battery.percent < BATTERY_FAULT_PERCENT:
        status = HealthStatus.FAULT
    elif not battery.charging and battery.percent < BATTERY_WARNING_PERCENT:
        status = HealthStatus.WARNING
    details = []
    worn = False
    if battery.health_percent is not None:
        details.append(_("capacity %(p)s of new") % {"p": f"{battery.health_percent:.0f}%"})
        worn = battery.health_percent < BATTERY_WORN_PERCENT
    if battery.cycles is not None:
        details.append(_("%(n)s charge cycles") % {"n": battery.cycles})
        worn = worn or battery.cycles >= BATTERY_RATED_CYCLES
    if worn:
        details.append(_("worn: due for replacement"))
        status = max(status, HealthStatus.WARNING, key=_RANK.__getitem__)
    return _item("battery", _("Battery"), status, value, details)


def _above(
    key: str, label: str, value: float | None, limits: tuple[float, float], shown: str
) -> HealthItem:
    """Fault above ``limits[0]``, warning above ``limits[1]``."""
    fault, warning = limits
    if value is None:
        return _unknown(key, label)
    if value > fault:
        status = HealthStatus.FAULT
    elif value > warning:
        status = HealthStatus.WARNING
    else:
        status = HealthStatus.OK
    return _item(key, label, status, shown)


def _clock(health: HealthMetrics) -> HealthItem:
    offset = health.clock_offset_s
    if offset is None:
        return _unknown("clock", _("Clock"))
    shown = _("%(s)s s against network time") % {"s": f"{offset:+.1f}"}
    return _above("clock", _("Clock"), abs(offset), (CLOCK_FAULT_S, CLOCK_WARNING_S), shown)


def _keys(health: HealthMetrics, today: date) -> HealthItem:
    keys = health.keys
    if keys is None:
        return _unknown("keys", _("Payment keys"))
    if keys.key_missing:
        return _item("keys", _("Payment keys"), HealthStatus.FAULT, _("payment key missing"))
    status = HealthStatus.OK
    parts = []
    if keys.dukpt_remaining is not None:
        left = keys.dukpt_remaining
        parts.append(_("%(n)s DUKPT counters left") % {"n": f"{left:,}"})
        if left < DUKPT_FAULT_REMAINING:
            status = HealthStatus.FAULT
        elif left < DUKPT_WARNING_REMAINING:
            status = HealthStatus.WARNING
    if keys.key_expiry is not None:
        days = (keys.key_expiry - today).days
        parts.append(_("expires %(d)s") % {"d": keys.key_expiry.isoformat()})
        if days < KEY_FAULT_DAYS:
            status = HealthStatus.FAULT
        elif days < KEY_WARNING_DAYS:
            status = max(status, HealthStatus.WARNING, key=_RANK.__getitem__)
    return _item("keys", _("Payment keys"), status, ", ".join(parts) or _("present"))


def _tamper(health: HealthMetrics) -> HealthItem:
    if health.tamper:
        details = [_("Stop using it at once: a tampered terminal cannot be reset.")]
        return _item("tamper", _("Tamper"), HealthStatus.FAULT, _("tamper detected"), details)
    return _item("tamper", _("Tamper"), HealthStatus.OK, _("none detected"))


def _transactions(health: HealthMetrics) -> HealthItem:
    t = health.transactions
    if t is None:
        return _unknown("transactions", _("Transactions"))
    value = _("%(a)s approved, %(d)s declined, %(f)s failed; %(u)s not yet settled") % {
        "a": t.approved,
        "d": t.declined,
        "f": t.failed,
        "u": t.unsettled_batch,
    }
    details = []
    if t.in_progress:
        details.append(_("A sale is in progress."))
    if t.decline_codes:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(t.decline_codes.items()))
        details.append(_("Declines by response code: %(codes)s") % {"codes": codes})
    return _item("transactions", _("Transactions"), HealthStatus.OK, value, details)


def duration_words(seconds: int) -> str:
    """A duration as its two largest units: ``3 d 4 h``, ``2 h 5 min``, ``40 s``."""
    parts: list[str] = []
    rest = seconds
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if rest >= size or parts:
            parts.append(f"{rest // size} {unit}")
            rest %= size
        if len(parts) == 2:
            break
    return " ".join(parts[:2]) if parts else f"{seconds} s"


def _uptime(health: HealthMetrics) -> HealthItem:
    if health.uptime_s is None:
        return _unknown("uptime", _("Up for"))
    details = []
    if health.reboot_reason is not None:
        reason = health.reboot_reason.value.replace("_", " ")
        details.append(_("last restart: %(why)s") % {"why": reason})
    return _item("uptime", _("Up for"), HealthStatus.OK, duration_words(health.uptime_s), details)


def _used(key: str, label: str, value: float | None) -> HealthItem:
    shown = _("%(p)s used") % {"p": f"{value:.0f}%"} if value is not None else ""
    return _above(key, label, value, (USED_FAULT_PERCENT, USED_WARNING_PERCENT), shown)


def _temperature(health: HealthMetrics) -> HealthItem:
    value = health.temperature_c
    shown = f"{value:.1f} °C" if value is not None else ""
    return _above(
        "temperature",
        _("Temperature"),
        value,
        (TEMPERATURE_FAULT_C, TEMPERATURE_WARNING_C),
        shown,
    )


_SIMPLE_ITEMS: tuple[Callable[[HealthMetrics], HealthItem], ...] = (
    _host,
    _network,
    _battery,
    _temperature,
    lambda h: _used("storage", _("Storage"), h.storage_used_pct),
    lambda h: _used("memory", _("Memory"), h.memory_used_pct),
)


def health_layout(
    terminal_id: str, health: HealthMetrics | None, reported_at: datetime | None, today: date
) -> HealthLayout:
    """The report item by item, in the order support goes through it on the phone."""
    if health is None:
        return HealthLayout(
            terminal_id=terminal_id, reported_at=None, status=HealthStatus.UNKNOWN, items=[]
        )
    items = [
        _printer(health),
        *_readers(health),
        *(make(health) for make in _SIMPLE_ITEMS),
        _keys(health, today),
        _tamper(health),
        _clock(health),
        _transactions(health),
        _uptime(health),
    ]
    worst = max((item.status for item in items), key=_RANK.__getitem__)
    return HealthLayout(terminal_id=terminal_id, reported_at=reported_at, status=worst, items=items)
