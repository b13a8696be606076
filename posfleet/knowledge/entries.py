"""One view of every knowledge entry, built-in or staff-written, in both languages.

A built-in entry's id is a dotted name (``printer.not_ready``), an article's its number
(``"12"``). Either language of an entry may be empty; a reader sees their language and,
text by text, the other one where theirs is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from posfleet.knowledge.builtin_entries import BuiltinEntry, builtin_entries
from posfleet.knowledge.languages import chinese
from posfleet.store.knowledge import ArticleRecord


class EntryKind(StrEnum):
    """Where an entry comes from."""

    BUILTIN = "builtin"
    ARTICLE = "article"


@dataclass(frozen=True)
class EntryText:
    """An entry's texts in one language (any of them may be empty)."""

    title: str = ""
    symptoms: tuple[str, ...] = ()
    cause: str = ""
    steps: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        """Every non-empty text, for searching."""
        return tuple(t for t in (self.title, *self.symptoms, self.cause, *self.steps) if t)


@dataclass(frozen=True)
class KnowledgeEntry:
    """A built-in entry or an article, with both languages and where it applies."""

    id: str
    kind: EntryKind
    en: EntryText
    zh: EntryText
    models: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    """The rules whose incidents this entry explains."""
    revision: int | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    def shown(self, reader_chinese: bool) -> EntryText:
        """The texts a reader sees: their language, the other one where theirs is empty."""
        first, second = (self.zh, self.en) if reader_chinese else (self.en, self.zh)
        return EntryText(
            title=first.title or second.title,
            symptoms=first.symptoms or second.symptoms,
            cause=first.cause or second.cause,
            steps=first.steps or second.steps,
        )


def _zh(texts: Sequence[str]) -> tuple[str, ...]:
    translated = tuple(chinese(t) for t in texts)
    # A half-translated list would mix languages in one list; show it whole or not at all.
    return translated if all(translated) else ()


def from_builtin(entry: BuiltinEntry, rule_ids: Sequence[str] = ()) -> KnowledgeEntry:
    """A built-in entry, its Chinese from the catalogue."""
    en = EntryText(entry.title, entry.symptoms, entry.cause, entry.remedy)
    zh = EntryText(
        chinese(entry.title), _zh(entry.symptoms), chinese(entry.cause), _zh(entry.remedy)
    )
    return KnowledgeEntry(
        id=entry.id,
        kind=EntryKind.BUILTIN,
        en=en,
        zh=zh,
        models=entry.models,
        rule_ids=tuple(rule_ids) or (entry.id,),
    )


def from_article(article: ArticleRecord) -> KnowledgeEntry:
    """A staff-written article."""
    c = article.content
    return KnowledgeEntry(
        id=str(article.id),
        kind=EntryKind.ARTICLE,
        en=EntryText(c.title_en, c.symptoms_en, "", c.steps_en),
        zh=EntryText(c.title_zh, c.symptoms_zh, "", c.steps_zh),
        models=c.models,
        rule_ids=(c.rule_id,) if c.rule_id else (),
        revision=article.revision,
        updated_by=article.updated_by,
        updated_at=article.updated_at,
    )


def builtin_knowledge(
    rules_by_entry: Mapping[str, Sequence[str]] | None = None,
) -> list[KnowledgeEntry]:
    """Every built-in entry; ``rules_by_entry`` names the rules that point at each."""
    found = rules_by_entry or {}
    return [from_builtin(e, found.get(e.id, ())) for e in builtin_entries().values()]


def is_article_id(entry_id: str) -> bool:
    """True for an article's id (a number), False for a built-in entry's dotted name."""
    return entry_id.isdigit() and len(entry_id) <= 18
