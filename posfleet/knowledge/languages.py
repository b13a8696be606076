"""The two languages of the knowledge base, through the dashboard's gettext catalogues.

Built-in entries are written in English; their Chinese is the ``knowledge`` catalogue's
translation of the same text, looked up like any other text of the product. Articles carry
both languages themselves. Which one a reader sees follows the request's language.
"""

from __future__ import annotations

from posfleet.i18n import SIMPLIFIED_CHINESE, current_locale, gettext, translations_for


def chinese(text: str) -> str:
    """``text``'s Simplified Chinese translation; empty when the catalogue has none."""
    translated = translations_for(SIMPLIFIED_CHINESE).gettext(text)
    return translated if translated != text else ""


def reader_reads_chinese() -> bool:
    """True when the request being answered is shown in Chinese."""
    return current_locale().language == "zh"


def in_reader_language(text: str) -> str:
    """``text`` (an English msgid) in the request's language."""
    return gettext(text)
