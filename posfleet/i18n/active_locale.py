"""The language of the request being answered, and the texts looked up in it.

A context variable holds the locale for the code that runs on behalf of one request (the
dashboard's middleware sets it with :func:`use_locale`); asyncio gives every task its own
copy, so two requests answered at once never see each other's language.

:func:`gettext` translates a text now. :func:`lazy_gettext` is for texts marked where no
request is being answered, typically module constants (``STATES = {...: _("open")}``):
it returns a :class:`LazyText`, a ``str`` whose value is the English text (so it compares,
hashes and serialises to JSON as the English), and which translates itself into the
request's language when a page shows it (``{{ label }}`` in an autoescaped template), when
it is formatted (``%``, ``str.format``, f-strings) or concatenated.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, SupportsIndex

from babel import Locale
from markupsafe import Markup, escape

from posfleet.i18n.catalogue_loading import translations_for
from posfleet.i18n.negotiation import DEFAULT_LOCALE

_ACTIVE: contextvars.ContextVar[Locale | None] = contextvars.ContextVar(
    "posfleet_locale", default=None
)


def active_locale() -> Locale | None:
    """The locale set for the code running now, None outside any request."""
    return _ACTIVE.get()


def current_locale() -> Locale:
    """The locale texts are shown in now: the active one, else English."""
    return _ACTIVE.get() or DEFAULT_LOCALE


@contextmanager
def use_locale(locale: Locale) -> Iterator[Locale]:
    """Show texts in ``locale`` within the ``with`` block."""
    token = _ACTIVE.set(locale)
    try:
        yield locale
    finally:
        _ACTIVE.reset(token)


def set_locale(locale: Locale) -> None:
    """Show texts in ``locale`` from now on in this task (a middleware that cannot nest)."""
    _ACTIVE.set(locale)


def gettext(message: str) -> str:
    """``message`` in the current language (itself in English or where untranslated)."""
    locale = current_locale()
    if locale == DEFAULT_LOCALE:
        return str.__str__(message)
    return translations_for(locale).gettext(str.__str__(message))


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural form for ``count`` in the current language."""
    locale = current_locale()
    if locale == DEFAULT_LOCALE:
        return str.__str__(singular if count == 1 else plural)
    return translations_for(locale).ngettext(singular, plural, count)


def pgettext(context: str, message: str) -> str:
    """``message`` in the current language, disambiguated by ``context``."""
    locale = current_locale()
    if locale == DEFAULT_LOCALE:
        return str.__str__(message)
    return str(translations_for(locale).pgettext(context, message))


def npgettext(context: str, singular: str, plural: str, count: int) -> str:
    """The plural form for ``count`` in the current language, disambiguated by ``context``."""
    locale = current_locale()
    if locale == DEFAULT_LOCALE:
        return str.__str__(singular if count == 1 else plural)
    return translations_for(locale).npgettext(context, singular, plural, count)


class LazyText(str):
    """A text marked for translation before any language was chosen.

    Its ``str`` value is the English msgid; showing or formatting it gives the current
    language's translation. Methods that read the characters (``upper``, ``split``,
    ``join`` of a list of them) see the English: translate first with :func:`gettext`
    (``{{ _(label) | upper }}`` in a template) where that matters.
    """

    __slots__ = ()

    def translated(self) -> str:
        """The text in the current language, as a plain ``str``."""
        return gettext(self)

    def __str__(self) -> str:
        return self.translated()

    def __html__(self) -> Markup:
        return escape(self.translated())

    def __format__(self, format_spec: str) -> str:
        return format(self.translated(), format_spec)

    def __mod__(self, values: Any) -> str:
        text: str = self.translated() % values
        return text

    def __add__(self, other: str) -> str:
        return self.translated() + other

    def __radd__(self, other: str) -> str:
        return other + self.translated()

    def __mul__(self, times: SupportsIndex) -> str:
        return self.translated() * times

    def format(self, *args: object, **kwargs: object) -> str:
        """``str.format`` on the translated text."""
        return self.translated().format(*args, **kwargs)


def lazy_gettext(message: str) -> str:
    """``message`` as a :class:`LazyText` that translates itself when shown."""
    return LazyText(message)


def mark(message: str) -> str:
    """The dashboard's ``_()``: translated now while a request is answered, lazily otherwise."""
    if _ACTIVE.get() is None:
        return LazyText(message)
    return gettext(message)
