"""The knowledge base under ``/api/v1/knowledge``: search, read, and (support lead) write.

Thin handlers over :class:`posfleet.knowledge.library.KnowledgeLibrary` and
:mod:`posfleet.knowledge.articles`. Keys stay English; the human texts of an entry
(``title``, ``symptoms``, ``cause``, ``steps``) follow the request's language, and both
languages are given whole under ``en`` and ``zh``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import pydantic
from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.json_bodies import json_model, json_object_body, validated_body
from posfleet.dashboard.query_params import query_model
from posfleet.dashboard.templating import _
from posfleet.knowledge.articles import (
    MAX_LINES,
    MAX_MODELS,
    MAX_TEXT,
    ArticleConflictError,
    ArticleInputError,
    ArticleNotFoundError,
    create_article,
    edit_article,
)
from posfleet.knowledge.entries import EntryText, KnowledgeEntry
from posfleet.knowledge.languages import reader_reads_chinese
from posfleet.knowledge.library import KnowledgeLibrary
from posfleet.knowledge.search import MAX_QUERY
from posfleet.store.accounts import Role
from posfleet.store.knowledge import ArticleContent
from posfleet.store.schema import KNOWLEDGE_TITLE_MAX

API_KNOWLEDGE_PATH = "/api/v1/knowledge"
LIBRARY_KEY = web.AppKey("knowledge_library", KnowledgeLibrary)
ENTRY_ID_PATTERN = r"^([0-9]{1,18}|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*)$"
_Text = Annotated[str, pydantic.Field(max_length=MAX_TEXT)]
_Lines = Annotated[list[_Text], pydantic.Field(max_length=MAX_LINES)]
_Title = Annotated[str, pydantic.Field(max_length=KNOWLEDGE_TITLE_MAX)]


def library(request: web.Request) -> KnowledgeLibrary:
    """The app's knowledge library (made by :func:`add_routes`, kept for the app's life)."""
    return request.app[LIBRARY_KEY]


class KnowledgeQuery(pydantic.BaseModel):
    """``GET /api/v1/knowledge``: symptom words in English or Chinese; none lists all."""

    model_config = pydantic.ConfigDict(extra="forbid")
    q: Annotated[str, pydantic.Field(max_length=MAX_QUERY)] = ""
    limit: Annotated[int, pydantic.Field(ge=1, le=200)] = 50


class EntryIdPath(pydantic.BaseModel):
    """``{entry_id}``: a built-in entry's dotted name or an article's number."""

    entry_id: Annotated[str, pydantic.Field(max_length=96, pattern=ENTRY_ID_PATTERN)]


class EntryTexts(pydantic.BaseModel):
    """An entry's texts in one language (empty where that language has none)."""

    title: str
    symptoms: list[str]
    cause: str
    steps: list[str]

    @classmethod
    def of(cls, text: EntryText) -> EntryTexts:
        """From the knowledge package's view."""
        return cls(
            title=text.title, symptoms=list(text.symptoms), cause=text.cause, steps=list(text.steps)
        )


class EntrySummary(pydantic.BaseModel):
    """One entry in a list or a search answer."""

    id: str
    kind: str
    title: str
    rule_ids: list[str]
    models: list[str]
    score: int | None = None
    """How well it matched the query (higher is better); None without a query."""


class KnowledgeList(pydantic.BaseModel):
    """Entries matching the query, best first (or all entries)."""

    query: str
    entries: list[EntrySummary]


class EntryDetail(pydantic.BaseModel):
    """One entry: its texts in the request's language, and both languages whole."""

    id: str
    kind: str
    title: str
    symptoms: list[str]
    cause: str
    steps: list[str]
    en: EntryTexts
    zh: EntryTexts
    models: list[str]
    rule_ids: list[str]
    revision: int | None
    updated_by: str | None
    updated_at: datetime | None


class ArticleBody(pydantic.BaseModel):
    """A new article, or the whole new text of one (a PATCH gives only what changes)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    title_en: _Title = ""
    title_zh: _Title = ""
    symptoms_en: _Lines = []
    symptoms_zh: _Lines = []
    steps_en: _Lines = []
    steps_zh: _Lines = []
    models: Annotated[list[Annotated[str, pydantic.Field(max_length=64)]], pydantic.Field(
        max_length=MAX_MODELS
    )] = []  # fmt: skip
    rule_id: Annotated[str | None, pydantic.Field(max_length=96)] = None
    base_revision: Annotated[int | None, pydantic.Field(ge=1)] = None
    """PATCH only: the revision the edit starts from; a newer one answers 409."""


def summary(entry: KnowledgeEntry, score: int | None = None) -> EntrySummary:
    """An entry as a list row, titled in the request's language."""
    return EntrySummary(
        id=entry.id,
        kind=entry.kind.value,
        title=entry.shown(reader_reads_chinese()).title,
        rule_ids=list(entry.rule_ids),
        models=list(entry.models),
        score=score,
    )


def detail(entry: KnowledgeEntry) -> EntryDetail:
    """An entry whole, shown in the request's language."""
    shown = entry.shown(reader_reads_chinese())
    return EntryDetail(
        id=entry.id,
        kind=entry.kind.value,
        title=shown.title,
        symptoms=list(shown.symptoms),
        cause=shown.cause,
        steps=list(shown.steps),
        en=EntryTexts.of(entry.en),
        zh=EntryTexts.of(entry.zh),
        models=list(entry.models),
        rule_ids=list(entry.rule_ids),
        revision=entry.revision,
        updated_by=entry.updated_by,
        updated_at=entry.updated_at,
    )


class ArticleConflict(RequestRejectedError):
    """The article changed since the editor read it."""

    status = 409
    code = "conflict"


@contextmanager
def article_errors() -> Iterator[None]:
    """The knowledge package's refusals as the dashboard's: 400 naming a field, 404, 409."""
    try:
        yield
    except ArticleInputError as exc:
        raise InvalidParameterError(exc.field, f"{exc.field}: {exc.reason}") from None
    except ArticleNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ArticleConflictError as exc:
        raise ArticleConflict(str(exc)) from None


def article_id_of(entry_id: str) -> int:
    """The article number in a path; 404 for a built-in entry (those are not edited here)."""
    if not entry_id.isdigit() or len(entry_id) > 18:
        raise NotFoundError(_("built-in entries are edited in the rule pack, not here"))
    return int(entry_id)


def _entry_id(request: web.Request) -> str:
    raw = request.match_info["entry_id"]
    return validated_body(EntryIdPath, {"entry_id": raw}).entry_id


def content_of(body: ArticleBody) -> ArticleContent:
    """The article content a body gives."""
    return ArticleContent(
        title_en=body.title_en,
        title_zh=body.title_zh,
        symptoms_en=tuple(body.symptoms_en),
        symptoms_zh=tuple(body.symptoms_zh),
        steps_en=tuple(body.steps_en),
        steps_zh=tuple(body.steps_zh),
        models=tuple(body.models),
        rule_id=body.rule_id,
    )


@api_operation(
    "Search the knowledge base", tag="knowledge", response=KnowledgeList, query=KnowledgeQuery
)
@requires(Role.VIEWER)
async def list_knowledge(request: web.Request) -> web.Response:
    """``GET /api/v1/knowledge?q=``: entries matching symptom words, or every entry."""
    query = query_model(request.query, KnowledgeQuery)
    lib = library(request)
    if query.q.strip():
        hits = await lib.search(query.q, query.limit)
        rows = [summary(h.entry, h.score) for h in hits]
    else:
        rows = [summary(e) for e in (await lib.entries())[: query.limit]]
    return json_model(KnowledgeList(query=query.q, entries=rows))


@api_operation(
    "Show a knowledge entry",
    tag="knowledge",
    response=EntryDetail,
    path=EntryIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def get_knowledge(request: web.Request) -> web.Response:
    """``GET /api/v1/knowledge/{entry_id}``: one entry in both languages."""
    entry_id = _entry_id(request)
    entry = await library(request).entry(entry_id)
    if entry is None:
        raise NotFoundError(_("there is no knowledge entry %s") % entry_id)
    return json_model(detail(entry))


async def _body(request: web.Request) -> ArticleBody:
    return validated_body(ArticleBody, await json_object_body(request, max_fields=12))


@api_operation(
    "Write a knowledge article", tag="knowledge", response=EntryDetail, status=201, body=ArticleBody
)
@requires(Role.LEAD)
async def create_knowledge(request: web.Request) -> web.Response:
    """``POST /api/v1/knowledge``: a new article (support lead and above)."""
    body = await _body(request)
    with article_errors():
        article = await create_article(
            request.app[ENGINE_KEY], content_of(body), principal(request).actor
        )
    entry = await library(request).entry(str(article.id))
    assert entry is not None
    return json_model(detail(entry), 201)


@api_operation(
    "Edit a knowledge article",
    tag="knowledge",
    response=EntryDetail,
    path=EntryIdPath,
    body=ArticleBody,
    errors=(400, 401, 403, 404, 409),
)
@requires(Role.LEAD)
async def patch_knowledge(request: web.Request) -> web.Response:
    """``PATCH /api/v1/knowledge/{entry_id}``: change the fields given; a new revision."""
    article_id = article_id_of(_entry_id(request))
    raw = await json_object_body(request, max_fields=12)
    body = validated_body(ArticleBody, raw)
    current = await library(request).entry(str(article_id))
    if current is None:
        raise NotFoundError(_("there is no knowledge entry %s") % article_id)
    merged: dict[str, Any] = {
        "title_en": current.en.title,
        "title_zh": current.zh.title,
        "symptoms_en": list(current.en.symptoms),
        "symptoms_zh": list(current.zh.symptoms),
        "steps_en": list(current.en.steps),
        "steps_zh": list(current.zh.steps),
        "models": list(current.models),
        "rule_id": current.rule_ids[0] if current.rule_ids else None,
    }
    merged.update({k: v for k, v in body.model_dump().items() if k in raw})
    merged.pop("base_revision", None)
    with article_errors():
        article = await edit_article(
            request.app[ENGINE_KEY],
            article_id,
            content_of(ArticleBody.model_validate(merged)),
            principal(request).actor,
            base_revision=body.base_revision,
        )
    entry = await library(request).entry(str(article.id))
    assert entry is not None
    return json_model(detail(entry))


def add_routes(app: web.Application) -> None:
    """Register this module's routes on ``app`` and give it its knowledge library."""
    app[LIBRARY_KEY] = KnowledgeLibrary(app[ENGINE_KEY])
    app.router.add_get(API_KNOWLEDGE_PATH, list_knowledge)
    app.router.add_post(API_KNOWLEDGE_PATH, create_knowledge)
    app.router.add_get(API_KNOWLEDGE_PATH + "/{entry_id}", get_knowledge)
    app.router.add_patch(API_KNOWLEDGE_PATH + "/{entry_id}", patch_knowledge)
