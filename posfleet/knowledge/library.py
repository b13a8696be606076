"""The knowledge base as the dashboard and the CLI use it: entries, search, history, links.

Built-in entries are fixed for the life of the process; articles change, so the search
index is rebuilt when the articles' version (count and revisions) moves, checked with
one small query per search.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.knowledge.builtin_entries import builtin_entries
from posfleet.knowledge.entries import (
    KnowledgeEntry,
    builtin_knowledge,
    from_article,
    from_builtin,
    is_article_id,
)
from posfleet.knowledge.search import KnowledgeIndex, SearchHit
from posfleet.store.knowledge import (
    RevisionRecord,
    articles_version,
    get_article,
    list_articles,
    list_revisions,
)

MAX_ARTICLES = 5000
"""Articles indexed at most: far above what a helpdesk writes, and still fast to score."""


@cache
def rule_entries() -> MappingProxyType[str, str]:
    """Each built-in rule's knowledge entry id (rules without an entry left out)."""
    return MappingProxyType({r.id: r.kb for r in load_builtin_rules() if r.kb is not None})


def _rules_by_entry() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for rule_id, entry_id in rule_entries().items():
        found[entry_id].append(rule_id)
    return found


@dataclass(frozen=True)
class KnowledgeLink:
    """Where the "How to fix" link of an incident goes: the entry's path and English title."""

    entry_id: str
    title: str

    @property
    def path(self) -> str:
        """The entry's reading page."""
        return f"/knowledge/{self.entry_id}"


def link_for_rule(rule_id: str) -> KnowledgeLink | None:
    """The built-in entry that explains ``rule_id``'s incidents, if there is one."""
    entry_id = rule_entries().get(rule_id, rule_id)
    entry = builtin_entries().get(entry_id)
    return KnowledgeLink(entry.id, entry.title) if entry is not None else None


class KnowledgeLibrary:
    """Built-in entries and the articles of one database, searchable together."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._builtins = builtin_knowledge(_rules_by_entry())
        self._index: KnowledgeIndex | None = None
        self._version: tuple[int, int] | None = None

    async def index(self) -> KnowledgeIndex:
        """The current index: built-ins and every article, rebuilt when an article changed."""
        async with self._engine.connect() as conn:
            version = await articles_version(conn)
            if self._index is not None and version == self._version:
                return self._index
            # Two searches may rebuild at once after an edit; both build the same index.
            articles = await list_articles(conn, limit=MAX_ARTICLES)
        index = KnowledgeIndex([*self._builtins, *(from_article(a) for a in articles)])
        self._index, self._version = index, version
        return index

    async def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Entries matching ``query`` (symptom words, either language), best first."""
        return (await self.index()).search(query, limit)

    async def entries(self) -> list[KnowledgeEntry]:
        """Every entry: articles (newest edit first), then the built-ins."""
        index = await self.index()
        found = index.entries
        builtins = len(self._builtins)
        return [*found[builtins:], *found[:builtins]]

    async def entry(self, entry_id: str) -> KnowledgeEntry | None:
        """One entry by id (dotted name or article number), None if there is none."""
        if is_article_id(entry_id):
            async with self._engine.connect() as conn:
                article = await get_article(conn, int(entry_id))
            return from_article(article) if article is not None else None
        builtin = builtin_entries().get(entry_id)
        if builtin is None:
            return None
        return from_builtin(builtin, _rules_by_entry().get(entry_id, ()))

    async def articles_for_rule(self, rule_id: str) -> list[KnowledgeEntry]:
        """Staff articles linked to ``rule_id``."""
        index = await self.index()
        return [e for e in index.entries[len(self._builtins) :] if rule_id in e.rule_ids]

    async def history(self, article_id: int) -> list[RevisionRecord]:
        """Every revision of an article, newest first (empty for an unknown one)."""
        async with self._engine.connect() as conn:
            return await list_revisions(conn, article_id)
