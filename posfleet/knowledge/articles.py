"""Writing articles: the input checked, the edit stored with its revision and audit record.

Only the support lead role and above may call these (the dashboard checks the role); the
check here is of the content: a title in at least one language, bounded texts, known
shapes. Every save is one transaction: article row, revision row, audit entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.knowledge.builtin_entries import ENTRY_ID
from posfleet.knowledge.errors import KnowledgeError
from posfleet.store.accounts import record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.knowledge import (
    ArticleContent,
    ArticleRecord,
    get_article,
    insert_article,
    update_article,
)
from posfleet.store.schema import KNOWLEDGE_TITLE_MAX

MAX_TEXT = 500
"""Longest symptom or step (characters)."""
MAX_LINES = 30
"""Most symptoms, or steps, per language."""
MAX_MODELS = 20
MAX_MODEL = 64
MAX_RULE_ID = 96
_MODEL = re.compile(r"^[\w .+/-]+$")


class ArticleInputError(KnowledgeError, ValueError):
    """Content that cannot be saved; ``field`` names the form field, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ArticleNotFoundError(KnowledgeError, LookupError):
    """No article with that id."""

    def __init__(self, article_id: int) -> None:
        super().__init__(f"there is no knowledge article #{article_id}")
        self.article_id = article_id


class ArticleConflictError(KnowledgeError):
    """Someone saved the article since the editor loaded it."""

    def __init__(self, article_id: int, revision: int) -> None:
        super().__init__(
            f"article #{article_id} was changed meanwhile (now revision {revision}); "
            "reload it and make your edit again"
        )
        self.article_id = article_id
        self.revision = revision


def _lines(name: str, values: Sequence[str]) -> tuple[str, ...]:
    kept = tuple(v.strip() for v in values if v.strip())
    if len(kept) > MAX_LINES:
        raise ArticleInputError(name, f"at most {MAX_LINES} lines")
    for value in kept:
        if len(value) > MAX_TEXT:
            raise ArticleInputError(name, f"each line at most {MAX_TEXT} characters")
    return kept


def _title(name: str, value: str) -> str:
    value = value.strip()
    if len(value) > KNOWLEDGE_TITLE_MAX:
        raise ArticleInputError(name, f"at most {KNOWLEDGE_TITLE_MAX} characters")
    return value


def check_content(content: ArticleContent) -> ArticleContent:
    """``content`` trimmed; :class:`ArticleInputError` naming the first bad field."""
    title_en = _title("title_en", content.title_en)
    title_zh = _title("title_zh", content.title_zh)
    if not title_en and not title_zh:
        raise ArticleInputError("title_en", "give a title, in English or in Chinese")
    models = _lines("models", content.models)
    if len(models) > MAX_MODELS:
        raise ArticleInputError("models", f"at most {MAX_MODELS} models")
    for model in models:
        if len(model) > MAX_MODEL or not _MODEL.match(model):
            raise ArticleInputError("models", f"{model[:MAX_MODEL]!r} is not a model name")
    steps_en = _lines("steps_en", content.steps_en)
    steps_zh = _lines("steps_zh", content.steps_zh)
    if not steps_en and not steps_zh:
        raise ArticleInputError("steps_en", "give at least one step, in English or in Chinese")
    rule_id = (content.rule_id or "").strip() or None
    if rule_id is not None and (len(rule_id) > MAX_RULE_ID or not ENTRY_ID.match(rule_id)):
        raise ArticleInputError("rule_id", "a rule id is dotted lower-case words")
    return replace(
        content,
        title_en=title_en,
        title_zh=title_zh,
        symptoms_en=_lines("symptoms_en", content.symptoms_en),
        symptoms_zh=_lines("symptoms_zh", content.symptoms_zh),
        steps_en=steps_en,
        steps_zh=steps_zh,
        models=models,
        rule_id=rule_id,
    )


def _title_of(content: ArticleContent) -> str:
    return content.title_en or content.title_zh


async def create_article(engine: AsyncEngine, content: ArticleContent, actor: str) -> ArticleRecord:
    """Check and store a new article; audited as ``knowledge.create``."""
    checked = check_content(content)
    async with write_transaction(engine) as conn:
        article = await insert_article(conn, checked, actor, utcnow())
        await record_audit(
            conn,
            actor,
            "knowledge.create",
            f"article:{article.id}",
            {"revision": 1},
            _title_of(checked),
        )
    return article


async def edit_article(
    engine: AsyncEngine,
    article_id: int,
    content: ArticleContent,
    actor: str,
    *,
    base_revision: int | None = None,
) -> ArticleRecord:
    """Check and store the next revision; audited as ``knowledge.edit``.

    ``base_revision`` is the revision the editor started from; when the article has moved
    on since, :class:`ArticleConflictError` (nothing is overwritten). None skips the check.
    """
    checked = check_content(content)
    async with write_transaction(engine) as conn:
        current = await get_article(conn, article_id)
        if current is None:
            raise ArticleNotFoundError(article_id)
        if base_revision is not None and base_revision != current.revision:
            raise ArticleConflictError(article_id, current.revision)
        if checked == current.content:
            return current
        saved = await update_article(conn, current, checked, actor, utcnow())
        if saved is None:
            raise ArticleConflictError(article_id, current.revision + 1)
        await record_audit(
            conn,
            actor,
            "knowledge.edit",
            f"article:{article_id}",
            {"revision": saved.revision},
            _title_of(checked),
        )
    return saved
