"""Dates, numbers, ages and durations written the way the current language writes them.

English keeps the dashboard's compact forms (``2026-12-02 21:00Z``, ``12.5 %``,
``5 min ago``, ``1 d 12 h``), which staff and the tests know. Simplified Chinese gets
Babel's (CLDR) patterns for dates and numbers (``2026年12月2日 21:00 UTC``, ``12.5%``) and
its own units for ages and durations (``5分钟前``, ``1天12小时``). Every timestamp is shown
in UTC, as everywhere on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from babel import Locale
from babel.dates import format_date as babel_date
from babel.dates import format_time as babel_time
from babel.numbers import format_decimal, format_percent

from posfleet.i18n.active_locale import current_locale
from posfleet.i18n.negotiation import ENGLISH

_SIZES = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


@dataclass(frozen=True, slots=True)
class _Words:
    units: dict[str, str]
    joiner: str
    ago: str
    just_now: str
    zero: str


_ENGLISH_WORDS = _Words(
    units={"d": "d", "h": "h", "min": "min", "s": "s"},
    joiner=" ",
    ago="{n} {unit} ago",
    just_now="just now",
    zero="0",
)
_CHINESE_WORDS = _Words(
    units={"d": "天", "h": "小时", "min": "分钟", "s": "秒"},
    joiner="",
    ago="{n}{unit}前",
    just_now="刚刚",
    zero="0秒",
)


def _words(locale: Locale) -> _Words:
    return _CHINESE_WORDS if locale.language == "zh" else _ENGLISH_WORDS


def format_timestamp(value: datetime | None, locale: Locale | None = None) -> str:
    """A moment in UTC to the minute: ``2026-12-02 21:00Z``, ``2026年12月2日 21:00 UTC``."""
    if value is None:
        return "-"
    locale = locale or current_locale()
    moment = value.astimezone(UTC)
    if locale == ENGLISH:
        return moment.strftime("%Y-%m-%d %H:%MZ")
    day = babel_date(moment.date(), "long", locale=locale)
    return f"{day} {babel_time(moment, 'HH:mm', tzinfo=UTC, locale=locale)} UTC"


def format_date(value: datetime | None, locale: Locale | None = None) -> str:
    """A day: ``2026-12-02``, ``2026年12月2日``."""
    if value is None:
        return "-"
    locale = locale or current_locale()
    if locale == ENGLISH:
        return value.strftime("%Y-%m-%d")
    return babel_date(value.astimezone(UTC).date(), "long", locale=locale)


def format_number(value: float | None, digits: int = 0, locale: Locale | None = None) -> str:
    """A number with the language's grouping: ``12,345``, ``1,234.5``; ``-`` for none."""
    if value is None:
        return "-"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(value, format=pattern, locale=locale or current_locale())


def format_share(value: float | None, digits: int = 1, locale: Locale | None = None) -> str:
    """A share (0..1) as a percentage: ``12.5 %`` in English, ``12.5%`` in Chinese."""
    if value is None:
        return "-"
    locale = locale or current_locale()
    if locale == ENGLISH:
        return f"{value * 100:.{digits}f} %"
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + "%"
    return format_percent(value, format=pattern, locale=locale)


def format_age(then: datetime, now: datetime, locale: Locale | None = None) -> str:
    """How long ago ``then`` was, in its largest unit: ``5 min ago``, ``5分钟前``."""
    words = _words(locale or current_locale())
    seconds = int((now - then).total_seconds())
    if seconds < 1:
        return words.just_now
    for unit, size in _SIZES:
        if seconds >= size:
            return words.ago.format(n=seconds // size, unit=words.units[unit])
    return words.just_now


def format_duration(value: timedelta | None, locale: Locale | None = None) -> str:
    """A span in its two largest units: ``1 d 12 h``, ``1天12小时``; ``-`` for none."""
    if value is None:
        return "-"
    words = _words(locale or current_locale())
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in _SIZES:
        if seconds >= size:
            parts.append(f"{seconds // size}{' ' if words.joiner else ''}{words.units[unit]}")
            seconds %= size
    return words.joiner.join(parts[:2]) or words.zero
