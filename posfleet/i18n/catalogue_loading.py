"""Every gettext domain of a language, merged into one lookup.

Each part of posfleet keeps its own catalogue (domain) under
``posfleet/locale/<locale>/LC_MESSAGES/<domain>.po``: ``messages`` for the dashboard's
frame and pages, ``knowledge`` for the rule pack and knowledge base, and so on. A page
mixes texts of several domains, so the runtime merges them all into one
:class:`babel.support.Translations`; a msgid that two catalogues share is fine (the
``messages`` catalogue is merged last and so has the last word).

``make setup`` compiles each ``.po`` to ``.mo``. A ``.mo`` that is missing, or older than
its ``.po`` (someone edited a translation and did not run ``make setup``), is replaced by
reading the ``.po`` directly, with one warning per file, so a checkout never silently
falls back to English.
"""

from __future__ import annotations

import functools
import io
import logging
from pathlib import Path

from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from posfleet.i18n.negotiation import locale_name

log = logging.getLogger(__name__)

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
"""``posfleet/locale``: one directory per locale, the catalogue templates (``.pot``) beside."""

MAIN_DOMAIN = "messages"


def catalogue_dir(locale: Locale | str, root: Path = LOCALE_DIR) -> Path:
    """``<root>/<locale>/LC_MESSAGES``."""
    name = locale if isinstance(locale, str) else locale_name(locale)
    return root / name / "LC_MESSAGES"


def domains(locale: Locale | str, root: Path = LOCALE_DIR) -> list[str]:
    """The domains that have a catalogue for ``locale``, ``messages`` last."""
    folder = catalogue_dir(locale, root)
    if not folder.is_dir():
        return []
    names = {path.stem for path in folder.iterdir() if path.suffix in {".po", ".mo"}}
    return sorted(names, key=lambda name: (name == MAIN_DOMAIN, name))


_PLAIN_TEXT_SOURCES = (".yaml", ".yml")
"""Sources whose texts are shown as they are, never ``%``-formatted: a ``60% of`` in them
is no placeholder, whatever Babel's python-format guess says."""


def is_formatted(message: Message) -> bool:
    """Whether the code ``%``-formats ``message`` (Python ``_()`` and template texts do)."""
    if not message.locations:
        return True
    return any(not path.endswith(_PLAIN_TEXT_SOURCES) for path, _line in message.locations)


def placeholder_problems(catalog: Catalog) -> list[tuple[Message, str]]:
    """The translations whose ``%`` placeholders differ from their msgid's."""
    return [
        (message, "; ".join(str(error) for error in errors))
        for message, errors in catalog.check()
        if is_formatted(message)
    ]


def usable_messages(catalog: Catalog) -> Catalog:
    """``catalog`` without the entries a page must not use: fuzzy or empty ones, and those
    whose placeholders differ from the English (``%`` on them would fail the page)."""
    broken = {(message.context, message.id) for message, _why in placeholder_problems(catalog)}
    kept = Catalog(locale=catalog.locale, domain=catalog.domain, charset="utf-8")
    kept.mime_headers = catalog.mime_headers
    for message in catalog:
        if not message.id or message.fuzzy or (message.context, message.id) in broken:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if all(strings):
            kept[message.id] = message
    return kept


def compile_catalogue(catalog: Catalog, mo_path: Path) -> None:
    """Write ``catalog`` as a ``.mo`` file."""
    with mo_path.open("wb") as out:
        write_mo(out, catalog)


def _from_po(po_path: Path, domain: str) -> Translations:
    with po_path.open("rb") as source:
        catalog = read_po(source, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, usable_messages(catalog))
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def load_domain(locale: Locale | str, domain: str, root: Path = LOCALE_DIR) -> Translations:
    """One domain's translations: the compiled ``.mo``, or the ``.po`` when that is newer."""
    folder = catalogue_dir(locale, root)
    mo_path, po_path = folder / f"{domain}.mo", folder / f"{domain}.po"
    if mo_path.exists() and (
        not po_path.exists() or mo_path.stat().st_mtime >= po_path.stat().st_mtime
    ):
        with mo_path.open("rb") as compiled:
            return Translations(compiled, domain=domain)
    reason = "missing" if not mo_path.exists() else "older than its .po"
    log.warning("%s is %s (run make setup); reading %s", mo_path, reason, po_path)
    return _from_po(po_path, domain)


def load_translations(locale: Locale | str, root: Path = LOCALE_DIR) -> Translations:
    """All of ``locale``'s domains merged; empty (English as written) when it has none."""
    merged = Translations(domain=MAIN_DOMAIN)
    for domain in domains(locale, root):
        part = load_domain(locale, domain, root)
        merged.merge(part)
        # merge() copies the messages only; every domain of a locale has its plural rule.
        merged.plural = part.plural
    return merged


@functools.cache
def translations_for(locale: Locale) -> Translations:
    """The merged translations of ``locale``, loaded once per process."""
    return load_translations(locale)


def forget_loaded_translations() -> None:
    """Drop the loaded catalogues, so the next lookup reads them again (tests, tools)."""
    translations_for.cache_clear()
