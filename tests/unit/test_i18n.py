"""Languages without a server: which locale a request gets, how dates and numbers read in
it, lazy texts from module constants, and the merging of every domain's catalogue."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po

from posfleet.dashboard.templating import _, make_environment
from posfleet.i18n import (
    ENGLISH,
    SIMPLIFIED_CHINESE,
    format_age,
    format_duration,
    format_number,
    format_share,
    format_timestamp,
    load_translations,
    negotiate,
    use_locale,
)

LABEL = _("Waiting for the merchant")
"""Marked at import time, as the dashboard's module constants are."""


@pytest.mark.parametrize(
    ("setting", "header", "expected"),
    [
        (None, "zh-CN,zh;q=0.9,en;q=0.8", SIMPLIFIED_CHINESE),
        (None, "zh", SIMPLIFIED_CHINESE),
        (None, "zh-Hans-HK", SIMPLIFIED_CHINESE),
        (None, "en-GB,zh-CN;q=0.5", ENGLISH),
        (None, "fr-FR, de;q=0.8, zh-CN;q=0.3", SIMPLIFIED_CHINESE),
        (None, "zh-TW, zh-Hant", ENGLISH),
        (None, "de, fr", ENGLISH),
        (None, "zh-CN;q=0, en;q=0.1", ENGLISH),
        (None, ";;;,q=x,", ENGLISH),
        (None, None, ENGLISH),
        ("en", "zh-CN", ENGLISH),
        ("zh_CN", "en-US", SIMPLIFIED_CHINESE),
        ("tlh", "zh-CN", SIMPLIFIED_CHINESE),
    ],
)
def test_the_account_setting_beats_the_browser_and_anything_unknown_is_english(
    setting: str | None, header: str | None, expected: object
) -> None:
    assert negotiate(setting, header) == expected


def test_dates_numbers_ages_and_durations_read_as_each_language_writes_them() -> None:
    moment = datetime(2026, 12, 2, 21, 5, tzinfo=UTC)
    assert format_timestamp(moment, ENGLISH) == "2026-12-02 21:05Z"
    assert format_timestamp(moment, SIMPLIFIED_CHINESE) == "2026年12月2日 21:05 UTC"
    assert format_number(1234567.5, 1, SIMPLIFIED_CHINESE) == "1,234,567.5"
    assert format_share(0.125, 1, ENGLISH) == "12.5 %"
    assert format_share(0.125, 1, SIMPLIFIED_CHINESE) == "12.5%"
    earlier = moment - timedelta(minutes=5, seconds=3)
    assert format_age(earlier, moment, ENGLISH) == "5 min ago"
    assert format_age(earlier, moment, SIMPLIFIED_CHINESE) == "5分钟前"
    assert format_age(moment, moment, SIMPLIFIED_CHINESE) == "刚刚"
    span = timedelta(days=1, hours=12, minutes=7)
    assert format_duration(span, ENGLISH) == "1 d 12 h"
    assert format_duration(span, SIMPLIFIED_CHINESE) == "1天12小时"


def test_a_label_marked_at_import_time_shows_in_the_language_of_the_page() -> None:
    template = make_environment().from_string("{{ label }} | {{ _(label) }} | {{ now | utc }}")
    moment = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert LABEL == "Waiting for the merchant"  # compares and hashes as its English
    with use_locale(SIMPLIFIED_CHINESE):
        assert (
            template.render(label=LABEL, now=moment)
            == "等待商户 | 等待商户 | 2026年3月2日 08:00 UTC"
        )
        assert f"{LABEL}!" == "等待商户!"
        assert _("Waiting for the merchant") == "等待商户"
    with use_locale(ENGLISH):
        shown = template.render(label=LABEL, now=moment)
    assert shown == "Waiting for the merchant | Waiting for the merchant | 2026-03-02 08:00Z"


def _catalogue(path: Path, domain: str, entries: dict[str, str]) -> Catalog:
    catalog = Catalog(locale="zh_CN", domain=domain)
    for msgid, msgstr in entries.items():
        catalog.add(msgid, msgstr)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog)
    return catalog


def test_every_domain_is_merged_and_a_missing_or_stale_mo_falls_back_to_its_po(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    messages = _catalogue(folder / "messages.po", "messages", {"Printer": "打印机"})
    with (folder / "messages.mo").open("wb") as out:
        write_mo(out, messages)
    _catalogue(folder / "knowledge.po", "knowledge", {"Paper is out": "打印机缺纸"})
    _catalogue(folder / "reports.po", "reports", {"Top problems": "", "Trend": "趋势"})
    stale = folder / "reports.mo"
    stale.write_bytes(b"not a catalogue")
    os.utime(stale, (0, 0))

    with caplog.at_level(logging.WARNING, logger="posfleet.i18n.catalogue_loading"):
        merged = load_translations(SIMPLIFIED_CHINESE, tmp_path)
    assert merged.gettext("Printer") == "打印机"
    assert merged.gettext("Paper is out") == "打印机缺纸"
    assert merged.gettext("Trend") == "趋势"
    assert merged.gettext("Top problems") == "Top problems"  # empty: the English, not ""
    warned = sorted(
        name
        for record in caplog.records
        for name in ("knowledge.mo", "reports.mo")
        if name in record.getMessage()
    )
    assert warned == ["knowledge.mo", "reports.mo"]
