"""Which language a request is answered in: the account's setting, else the browser's.

Two languages are shipped: English (``en``, the language the texts are written in) and
Simplified Chinese (``zh_CN``). A browser's ``Accept-Language`` is read in order of its
quality values; ``zh``, ``zh-CN``, ``zh-SG`` and any ``zh-Hans`` tag mean Simplified
Chinese, any ``en`` tag English. Traditional Chinese tags (``zh-TW``, ``zh-Hant``) are
not Simplified Chinese and fall through to the next preference.
"""

from __future__ import annotations

from babel import Locale

ENGLISH = Locale("en")
SIMPLIFIED_CHINESE = Locale.parse("zh_CN")
"""Babel names it ``zh_Hans_CN`` (script included); settings and catalogues say ``zh_CN``."""
DEFAULT_LOCALE = ENGLISH

SUPPORTED_LOCALES: dict[str, Locale] = {"en": ENGLISH, "zh_CN": SIMPLIFIED_CHINESE}
"""The locales shipped, by the name an account setting stores."""

LOCALE_NAMES: dict[str, str] = {"en": "English", "zh_CN": "简体中文"}
"""Each language in its own words, as a language switch shows it."""

_SIMPLIFIED_REGIONS = frozenset({"", "cn", "sg", "my"})
_MAX_HEADER_ITEMS = 32
"""An Accept-Language header longer than this is read only this far (no browser sends more)."""


def supported_locale(tag: str | None) -> Locale | None:
    """The shipped locale a language tag (``zh-CN``, ``zh_Hans``, ``en-GB``) means, if any."""
    if not tag:
        return None
    parts = tag.strip().replace("_", "-").lower().split("-")
    language, rest = parts[0], parts[1:]
    if language == "en":
        return ENGLISH
    if language != "zh":
        return None
    if "hant" in rest:
        return None
    if "hans" in rest:
        return SIMPLIFIED_CHINESE
    region = rest[0] if rest else ""
    return SIMPLIFIED_CHINESE if region in _SIMPLIFIED_REGIONS else None


def accept_language_preferences(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most wanted first (``q=0`` left out).

    Malformed items are skipped rather than refused: a browser's header never fails a page.
    """
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:_MAX_HEADER_ITEMS]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(user_locale: str | None, accept_language: str | None) -> Locale:
    """The locale to answer in: the account's setting if it names a shipped language,
    else the browser's most wanted shipped language, else English."""
    chosen = SUPPORTED_LOCALES.get(user_locale) if user_locale else None
    if chosen is not None:
        return chosen
    for tag in accept_language_preferences(accept_language):
        found = supported_locale(tag)
        if found is not None:
            return found
    return DEFAULT_LOCALE


def locale_name(locale: Locale) -> str:
    """The name settings and catalogue folders use: ``en``, ``zh_CN`` (no script)."""
    return f"{locale.language}_{locale.territory}" if locale.territory else locale.language


def html_lang(locale: Locale) -> str:
    """The ``<html lang>`` value (BCP 47): ``en``, ``zh-CN``."""
    return locale_name(locale).replace("_", "-")
