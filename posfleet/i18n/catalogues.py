"""Maintain the gettext catalogues: ``python -m posfleet.i18n.catalogues <command>``.

Commands (run from the source tree; see ``docs/translations.md``):

``extract``
    Read every marked text from the sources (``babel.cfg``) and write one template per
    domain, ``posfleet/locale/<domain>.pot``. Files belong to the ``messages`` domain
    unless :data:`DOMAIN_SOURCES` gives them to another.
``update [--domain D ...]``
    Extract, then merge each template into ``posfleet/locale/zh_CN/LC_MESSAGES/<D>.po``
    (new texts empty, changed ones marked fuzzy, vanished ones dropped). Without
    ``--domain``: every domain that already has a catalogue, and ``messages``.
``check``
    Exit 1, listing file and text, when a marked text has no Chinese translation in any
    catalogue (all domains merged), only an empty or fuzzy one, or one whose placeholders
    differ from the English.
``compile``
    Write a ``.mo`` beside every ``.po`` (``make setup`` runs this). Fuzzy entries and
    entries with broken placeholders are left out, so the page shows the English instead
    of failing.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from posfleet.i18n.catalogue_loading import (
    LOCALE_DIR,
    MAIN_DOMAIN,
    catalogue_dir,
    compile_catalogue,
    placeholder_problems,
    usable_messages,
)

PROJECT_ROOT = LOCALE_DIR.parent.parent
"""The source tree: ``babel.cfg`` and the ``posfleet`` package."""

TRANSLATED_LOCALES = ("zh_CN",)
"""The locales with catalogues (English is the language the texts are written in)."""

DOMAIN_SOURCES: dict[str, tuple[str, ...]] = {
    "knowledge": (
        "posfleet/knowledge/*",
        "posfleet/diagnostics/rules/*",
        "posfleet/dashboard/knowledge*",
        "posfleet/dashboard/templates/knowledge*",
    ),
    "overview": (
        "posfleet/dashboard/overview*",
        "posfleet/dashboard/templates/overview*",
    ),
    "reports": (
        "posfleet/reports/*",
        "posfleet/dashboard/reports*",
        "posfleet/dashboard/templates/reports*",
    ),
}
"""Which source files' texts go to a domain other than ``messages`` (fnmatch patterns on
the path from the project root; ``*`` also crosses ``/``). Add a line for a new domain."""

MessageKey = tuple[str | None, str]
"""A message as catalogues key it: ``(context, msgid)`` (the singular for plurals)."""


@dataclass(frozen=True, slots=True)
class Found:
    """One marked text at one place in the sources."""

    path: str
    lineno: int
    message: str | tuple[str, ...]
    context: str | None
    comments: tuple[str, ...]

    @property
    def key(self) -> MessageKey:
        """How a catalogue keys it."""
        msgid = self.message[0] if isinstance(self.message, tuple) else self.message
        return self.context, msgid


@dataclass(frozen=True, slots=True)
class Problem:
    """A text the check refuses: where it is, what it is, and why."""

    path: str
    lineno: int
    message: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}: {self.message!r}"


def domain_of(path: str) -> str:
    """The domain a source file's texts belong to."""
    for domain, patterns in DOMAIN_SOURCES.items():
        if any(fnmatch.fnmatch(path, pattern) for pattern in patterns):
            return domain
    return MAIN_DOMAIN


def extract_sources(root: Path = PROJECT_ROOT) -> list[Found]:
    """Every marked text in the source tree, read as ``babel.cfg`` says."""
    with (root / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")  # type: ignore[no-untyped-call]
    found = []
    for path, lineno, message, comments, context in extract_from_dir(
        root, method_map, options_map, strip_comment_tags=True
    ):
        found.append(Found(path.replace("\\", "/"), lineno, message, context, tuple(comments)))
    return found


def templates_by_domain(found: Iterable[Found]) -> dict[str, Catalog]:
    """One catalogue template (``.pot``) per domain."""
    templates: dict[str, Catalog] = {}
    for item in found:
        domain = domain_of(item.path)
        template = templates.setdefault(
            domain,
            Catalog(
                domain=domain,
                project="posfleet",
                copyright_holder="the posfleet authors",
                charset="utf-8",
            ),
        )
        template.add(
            item.message,
            None,
            [(item.path, item.lineno)],
            auto_comments=item.comments,
            context=item.context,
        )
    templates.setdefault(MAIN_DOMAIN, Catalog(domain=MAIN_DOMAIN, project="posfleet"))
    return templates


def _write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=96, sort_output=True, ignore_obsolete=True)


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=locale, domain=path.stem)


def write_templates(templates: dict[str, Catalog], locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Write ``<locale_dir>/<domain>.pot`` for each template."""
    written = []
    for domain, template in sorted(templates.items()):
        path = locale_dir / f"{domain}.pot"
        _write(template, path)
        written.append(path)
    return written


def _new_catalogue(locale: str, domain: str) -> Catalog:
    return Catalog(
        locale,
        domain=domain,
        project="posfleet",
        copyright_holder="the posfleet authors",
        charset="utf-8",
    )


def update_catalogues(
    templates: dict[str, Catalog], domains: Sequence[str], locale_dir: Path = LOCALE_DIR
) -> list[Path]:
    """Merge each named domain's template into its catalogue of every translated locale."""
    written = []
    for locale in TRANSLATED_LOCALES:
        for domain in domains:
            template = templates.get(domain) or Catalog(domain=domain)
            path = catalogue_dir(locale, locale_dir) / f"{domain}.po"
            catalog = _read(path, locale) if path.exists() else _new_catalogue(locale, domain)
            catalog.update(template)
            catalog.fuzzy = False
            _write(catalog, path)
            written.append(path)
    return written


def _translated(message: Message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return not message.fuzzy and all(strings)


def _key(message: Message) -> MessageKey:
    msgid = message.id if isinstance(message.id, str) else message.id[0]
    return message.context, msgid


def _placeholder_errors(catalog: Catalog) -> dict[MessageKey, str]:
    return {_key(message): why for message, why in placeholder_problems(catalog)}


def check_catalogues(
    found: Iterable[Found], locale: str = "zh_CN", locale_dir: Path = LOCALE_DIR
) -> list[Problem]:
    """The marked texts without a usable translation in any of ``locale``'s catalogues."""
    translated: set[MessageKey] = set()
    fuzzy: set[MessageKey] = set()
    broken: dict[MessageKey, str] = {}
    folder = catalogue_dir(locale, locale_dir)
    for path in sorted(folder.glob("*.po")) if folder.is_dir() else []:
        catalog = _read(path, locale)
        errors = _placeholder_errors(catalog)
        broken.update({key: f"{path.name}: {why}" for key, why in errors.items()})
        for message in catalog:
            if not message.id:
                continue
            key = _key(message)
            if _translated(message) and key not in errors:
                translated.add(key)
            elif message.fuzzy:
                fuzzy.add(key)
    problems = []
    for item in found:
        if item.key in translated:
            continue
        if item.key in broken:
            reason = f"placeholders differ ({broken[item.key]})"
        elif item.key in fuzzy:
            reason = "translation is fuzzy"
        else:
            reason = f"no {locale} translation"
        problems.append(Problem(item.path, item.lineno, item.key[1], reason))
    return problems


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[tuple[Path, int, int]]:
    """Compile every ``.po`` to ``.mo``: ``(po, messages compiled, messages left out)``."""
    results = []
    for po_path in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        catalog = _read(po_path, po_path.parent.parent.name)
        kept = usable_messages(catalog)
        total = sum(1 for message in catalog if message.id)
        compile_catalogue(kept, po_path.with_suffix(".mo"))
        results.append((po_path, len(kept), total - len(kept)))
    return results


def _summary(problems: Sequence[Problem]) -> str:
    per_file: dict[str, int] = defaultdict(int)
    for problem in problems:
        per_file[problem.path] += 1
    return "\n".join(f"  {path}: {count}" for path, count in sorted(per_file.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; the exit status is 1 when ``check`` finds texts to translate."""
    parser = argparse.ArgumentParser(prog="python -m posfleet.i18n.catalogues")
    parser.add_argument("command", choices=["extract", "update", "check", "compile"])
    parser.add_argument("--domain", action="append", help="update only this domain")
    args = parser.parse_args(argv)
    if args.command == "compile":
        for po_path, compiled, left_out in compile_all():
            note = f", {left_out} untranslated, fuzzy or broken left out" if left_out else ""
            print(f"{po_path.relative_to(PROJECT_ROOT)}: {compiled} messages{note}")
        return 0
    found = extract_sources()
    if args.command == "check":
        problems = check_catalogues(found)
        for problem in problems:
            print(problem)
        if problems:
            print(f"{len(problems)} texts to translate, per file:\n{_summary(problems)}")
            return 1
        print(f"all {len(found)} marked texts are translated")
        return 0
    templates = templates_by_domain(found)
    for path in write_templates(templates):
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    if args.command == "update":
        existing = {
            path.stem for path in LOCALE_DIR.glob("*/LC_MESSAGES/*.po") if path.stem in templates
        }
        domains = args.domain or sorted(existing | {MAIN_DOMAIN})
        for path in update_catalogues(templates, domains):
            print(f"updated {path.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
