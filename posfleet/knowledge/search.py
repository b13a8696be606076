"""Searching the knowledge base by symptom words, in English and in Chinese.

English is matched by words (case-folded, no stemming); Chinese, written without spaces,
by substring and by the character bigrams of the query: "打印机不出纸" gives 打印, 印机,
机不, 不出, 出纸, and an entry ranks by how many of them its texts contain. A query that
occurs whole in an entry's text ranks above one matched only in pieces.

The knowledge base has hundreds of entries, not millions: every search scores a cached
list in process (well under a millisecond per entry), rebuilt when an article changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from posfleet.knowledge.entries import KnowledgeEntry

MAX_QUERY = 200
"""Longest query accepted (characters)."""

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "at", "be", "by", "for", "from", "in", "is", "it", "its", "of",
    "on", "or", "the", "to", "with",
})  # fmt: skip

_WHOLE_QUERY = 6
"""Weight of the whole query occurring in a text, against 1 per matched word or bigram."""
_TITLE_OR_SYMPTOM = 2
"""Extra weight when that text is the entry's title or one of its symptoms."""


def _latin_words(text: str) -> set[str]:
    stripped = _HAN.sub(" ", text.casefold())
    return {w for w in _WORD.findall(stripped) if w not in _STOP_WORDS}


def _bigrams(text: str) -> set[str]:
    grams: set[str] = set()
    for run in _HAN.findall(text):
        if len(run) == 1:
            grams.add(run)
        grams.update(run[i : i + 2] for i in range(len(run) - 1))
    return grams


@dataclass(frozen=True)
class _Document:
    entry: KnowledgeEntry
    texts: tuple[str, ...]
    """Every text, case-folded, both languages."""
    headline: tuple[str, ...]
    """Titles and symptoms, case-folded: a match there says more."""
    words: frozenset[str]
    bigrams: frozenset[str]


def _document(entry: KnowledgeEntry) -> _Document:
    texts = tuple(t.casefold() for t in (*entry.en.all, *entry.zh.all))
    headline = tuple(
        t.casefold() for lang in (entry.en, entry.zh) for t in (lang.title, *lang.symptoms) if t
    )
    words: set[str] = set()
    grams: set[str] = set()
    for text in texts:
        words |= _latin_words(text)
        grams |= _bigrams(text)
    return _Document(entry, texts, headline, frozenset(words), frozenset(grams))


@dataclass(frozen=True)
class SearchHit:
    """One entry that matched, and how well (higher is better)."""

    entry: KnowledgeEntry
    score: int


class KnowledgeIndex:
    """The entries, prepared for scoring; build once, search many times."""

    def __init__(self, entries: Iterable[KnowledgeEntry]) -> None:
        self._documents = [_document(e) for e in entries]

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def entries(self) -> list[KnowledgeEntry]:
        """Every entry, in the order given."""
        return [d.entry for d in self._documents]

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """The entries matching ``query``, best first; empty for a query with no terms."""
        phrase = " ".join(query.casefold().split())
        words = _latin_words(phrase)
        grams = _bigrams(phrase)
        if not phrase or not (words or grams):
            return []
        # An entry sharing one bigram of a long query is noise: ask for a third of the terms.
        least = max(1, (len(words) + len(grams)) // 3)
        hits = []
        for doc in self._documents:
            score = len(words & doc.words) + len(grams & doc.bigrams)
            if score < least:
                continue
            if any(phrase in text for text in doc.texts):
                score += _WHOLE_QUERY
                if any(phrase in text for text in doc.headline):
                    score += _TITLE_OR_SYMPTOM
                if phrase in doc.headline:
                    score += _TITLE_OR_SYMPTOM
            hits.append(SearchHit(doc.entry, score))
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]


def rank_ids(hits: Sequence[SearchHit]) -> list[str]:
    """The ids of ``hits``, in their order (for tests and the CLI)."""
    return [h.entry.id for h in hits]
