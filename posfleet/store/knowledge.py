"""Staff-written knowledge articles and their revisions (migration 0015).

Every function takes an open connection and leaves the transaction to the caller, so an
edit, its revision and its audit record commit together. Checking the input is the
knowledge package's job (:mod:`posfleet.knowledge.articles`); this module stores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import knowledge_articles, knowledge_revisions

CONTENT_FIELDS = (
    "title_en",
    "title_zh",
    "symptoms_en",
    "symptoms_zh",
    "steps_en",
    "steps_zh",
    "models",
    "rule_id",
)
"""The fields an edit may change; a revision keeps all of them."""


@dataclass(frozen=True)
class ArticleContent:
    """What a staff member writes: title, symptoms and steps in both languages."""

    title_en: str = ""
    title_zh: str = ""
    symptoms_en: tuple[str, ...] = ()
    symptoms_zh: tuple[str, ...] = ()
    steps_en: tuple[str, ...] = ()
    steps_zh: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    """Terminal models the article applies to; empty for every model."""
    rule_id: str | None = None
    """The rule whose incidents the article helps with, if any."""

    def to_json(self) -> dict[str, Any]:
        """The content as stored in a revision (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArticleContent:
        """Read back what :meth:`to_json` wrote (unknown keys ignored)."""
        values: dict[str, Any] = {}
        for name in CONTENT_FIELDS:
            if name not in data:
                continue
            raw = data[name]
            values[name] = tuple(str(v) for v in raw) if isinstance(raw, list) else raw
        return cls(**values)


@dataclass(frozen=True)
class ArticleRecord:
    """One stored article, at its latest revision."""

    id: int
    content: ArticleContent
    revision: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class RevisionRecord:
    """One edit of an article: who made it, when, which fields, and the content after it."""

    article_id: int
    revision: int
    edited_by: str
    edited_at: datetime
    changed: tuple[str, ...]
    content: ArticleContent = field(compare=False)


def _texts(raw: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in raw) if isinstance(raw, list) else ()


def _record(row: sa.Row[Any]) -> ArticleRecord:
    m = row._mapping
    content = ArticleContent(
        title_en=m["title_en"],
        title_zh=m["title_zh"],
        symptoms_en=_texts(m["symptoms_en"]),
        symptoms_zh=_texts(m["symptoms_zh"]),
        steps_en=_texts(m["steps_en"]),
        steps_zh=_texts(m["steps_zh"]),
        models=_texts(m["models"]),
        rule_id=m["rule_id"],
    )
    return ArticleRecord(
        id=m["id"],
        content=content,
        revision=m["revision"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_by=m["updated_by"],
        updated_at=m["updated_at"],
    )


def changed_fields(before: ArticleContent | None, after: ArticleContent) -> tuple[str, ...]:
    """The names of the fields that differ (all non-empty ones for a new article)."""
    if before is None:
        return tuple(n for n in CONTENT_FIELDS if getattr(after, n) not in ("", (), None))
    return tuple(n for n in CONTENT_FIELDS if getattr(before, n) != getattr(after, n))


async def _add_revision(
    conn: AsyncConnection,
    *,
    article_id: int,
    revision: int,
    content: ArticleContent,
    changed: Sequence[str],
    actor: str,
    now: datetime,
) -> None:
    await conn.execute(
        sa.insert(knowledge_revisions).values(
            article_id=article_id,
            revision=revision,
            edited_by=actor,
            edited_at=now,
            changed=list(changed),
            content=content.to_json(),
        )
    )


async def insert_article(
    conn: AsyncConnection, content: ArticleContent, actor: str, now: datetime
) -> ArticleRecord:
    """Store a new article as revision 1 (and its first revision row)."""
    values = content.to_json()
    result = await conn.execute(
        sa.insert(knowledge_articles)
        .values(
            **values,
            revision=1,
            created_by=actor,
            created_at=now,
            updated_by=actor,
            updated_at=now,
        )
        .returning(knowledge_articles.c.id)
    )
    article_id = int(result.scalar_one())
    changed = changed_fields(None, content)
    await _add_revision(
        conn,
        article_id=article_id,
        revision=1,
        content=content,
        changed=changed,
        actor=actor,
        now=now,
    )
    return ArticleRecord(article_id, content, 1, actor, now, actor, now)


async def update_article(
    conn: AsyncConnection,
    current: ArticleRecord,
    content: ArticleContent,
    actor: str,
    now: datetime,
) -> ArticleRecord | None:
    """Store ``content`` as the next revision of ``current``.

    Returns None when someone else saved a revision since ``current`` was read (the row's
    revision moved on): the caller reports the conflict instead of losing their edit.
    """
    revision = current.revision + 1
    result = await conn.execute(
        sa.update(knowledge_articles)
        .where(knowledge_articles.c.id == current.id)
        .where(knowledge_articles.c.revision == current.revision)
        .values(**content.to_json(), revision=revision, updated_by=actor, updated_at=now)
    )
    if result.rowcount != 1:
        return None
    changed = changed_fields(current.content, content)
    await _add_revision(
        conn,
        article_id=current.id,
        revision=revision,
        content=content,
        changed=changed,
        actor=actor,
        now=now,
    )
    return ArticleRecord(
        current.id, content, revision, current.created_by, current.created_at, actor, now
    )


async def get_article(conn: AsyncConnection, article_id: int) -> ArticleRecord | None:
    """The article with ``article_id``, None if there is none."""
    row = (
        await conn.execute(
            sa.select(knowledge_articles).where(knowledge_articles.c.id == article_id)
        )
    ).first()
    return _record(row) if row is not None else None


async def list_articles(conn: AsyncConnection, limit: int = 1000) -> list[ArticleRecord]:
    """Every article (up to ``limit``), newest edit first."""
    rows = await conn.execute(
        sa.select(knowledge_articles)
        .order_by(knowledge_articles.c.updated_at.desc(), knowledge_articles.c.id.desc())
        .limit(limit)
    )
    return [_record(row) for row in rows]


async def articles_version(conn: AsyncConnection) -> tuple[int, int]:
    """(count, sum of revisions): changes whenever an article is added or edited.

    Lets a cached search index tell cheaply whether it is still current.
    """
    row = (
        await conn.execute(
            sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(knowledge_articles.c.revision), 0)
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def list_revisions(conn: AsyncConnection, article_id: int) -> list[RevisionRecord]:
    """Every revision of the article, newest first."""
    rows = await conn.execute(
        sa.select(knowledge_revisions)
        .where(knowledge_revisions.c.article_id == article_id)
        .order_by(knowledge_revisions.c.revision.desc())
    )
    return [
        RevisionRecord(
            article_id=row.article_id,
            revision=row.revision,
            edited_by=row.edited_by,
            edited_at=row.edited_at,
            changed=_texts(row.changed),
            content=ArticleContent.from_json(dict(row.content)),
        )
        for row in rows
    ]
