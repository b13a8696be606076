"""The knowledge base pages: built-in and staff-written fixes, searchable in both languages.

``/knowledge`` searches (or lists) every entry; ``/knowledge/{entry}`` reads one in the
reader's language; support leads write and edit articles (``/knowledge/new``,
``/knowledge/{id}/edit``), every edit kept (``/knowledge/{id}/history``). A refused edit
shows the form again with the reason beside the field. Incident and terminal pages link
here through ``knowledge_link.html`` and the ``knowledge_link_for`` template global.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiMapping

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import NotFoundError
from posfleet.dashboard.knowledge_api import KnowledgeQuery, article_id_of, library
from posfleet.dashboard.query_params import query_model
from posfleet.dashboard.templating import _, render_page
from posfleet.knowledge.articles import (
    ArticleConflictError,
    ArticleInputError,
    ArticleNotFoundError,
    create_article,
    edit_article,
)
from posfleet.knowledge.entries import KnowledgeEntry
from posfleet.knowledge.languages import in_reader_language, reader_reads_chinese
from posfleet.knowledge.library import KnowledgeLink, link_for_rule
from posfleet.store.accounts import Role
from posfleet.store.knowledge import ArticleContent

KNOWLEDGE_PATH = "/knowledge"
NEW_PATH = "/knowledge/new"
MAX_FORM_FIELD = 20_000
"""Longest text a form field may send; the article's own limits are checked after."""
FORM_FIELDS = (
    "title_en", "title_zh", "symptoms_en", "symptoms_zh", "steps_en", "steps_zh", "models",
    "rule_id",
)  # fmt: skip


def entry_path(entry_id: str) -> str:
    """An entry's reading page."""
    return f"{KNOWLEDGE_PATH}/{entry_id}"


def _links(links: list[KnowledgeLink | None]) -> list[KnowledgeLink]:
    seen: dict[str, KnowledgeLink] = {}
    for link in links:
        if link is not None:
            seen.setdefault(link.entry_id, link)
    return list(seen.values())


def knowledge_link_for(*rule_ids: str) -> list[KnowledgeLink]:
    """The entries that explain these rules' incidents (template global, one per entry),
    titled in the language of the page being drawn."""
    links = _links([link_for_rule(rule_id) for rule_id in rule_ids if rule_id])
    return [replace(link, title=in_reader_language(link.title)) for link in links]


def _may_write(request: web.Request) -> bool:
    return principal(request).role.permits(Role.LEAD)


def _row(entry: KnowledgeEntry, chinese: bool) -> dict[str, Any]:
    shown = entry.shown(chinese)
    return {"entry": entry, "title": shown.title, "symptoms": shown.symptoms[:3]}


@requires(Role.VIEWER)
async def knowledge_list(request: web.Request) -> web.Response:
    """``GET /knowledge[?q=]``: entries matching the symptom words, or all of them."""
    query = query_model(request.query, KnowledgeQuery)
    chinese = reader_reads_chinese()
    lib = library(request)
    if query.q.strip():
        entries = [hit.entry for hit in await lib.search(query.q, query.limit)]
    else:
        entries = await lib.entries()
    context = {
        "query": query.q,
        "rows": [_row(e, chinese) for e in entries],
        "may_write": _may_write(request),
        "new_path": NEW_PATH,
        "knowledge_path": KNOWLEDGE_PATH,
    }
    return render_page(request, "knowledge.html", context)


async def _entry(request: web.Request) -> KnowledgeEntry:
    entry_id = request.match_info["entry_id"]
    entry = await library(request).entry(entry_id) if len(entry_id) <= 96 else None
    if entry is None:
        raise NotFoundError(_("there is no knowledge entry %s") % entry_id[:96])
    return entry


@requires(Role.VIEWER)
async def knowledge_entry(request: web.Request) -> web.Response:
    """``GET /knowledge/{entry_id}``: the entry in the reader's language."""
    entry = await _entry(request)
    lib = library(request)
    related = []
    for rule_id in entry.rule_ids:
        related += [a for a in await lib.articles_for_rule(rule_id) if a.id != entry.id]
    chinese = reader_reads_chinese()
    context = {
        "entry": entry,
        "shown": entry.shown(chinese),
        "related": [_row(a, chinese) for a in related],
        "may_write": _may_write(request) and entry.kind.value == "article",
        "knowledge_path": KNOWLEDGE_PATH,
        "entry_path": entry_path(entry.id),
    }
    return render_page(request, "knowledge_entry.html", context)


def _values(content: ArticleContent | None) -> dict[str, str]:
    if content is None:
        return dict.fromkeys(FORM_FIELDS, "")
    return {
        "title_en": content.title_en,
        "title_zh": content.title_zh,
        "symptoms_en": "\n".join(content.symptoms_en),
        "symptoms_zh": "\n".join(content.symptoms_zh),
        "steps_en": "\n".join(content.steps_en),
        "steps_zh": "\n".join(content.steps_zh),
        "models": ", ".join(content.models),
        "rule_id": content.rule_id or "",
    }


def _form_page(
    request: web.Request,
    values: dict[str, str],
    *,
    action: str,
    revision: int | None = None,
    error: tuple[str, str] | None = None,
) -> web.Response:
    context = {
        "values": values,
        "action": action,
        "revision": revision,
        "error_field": error[0] if error else None,
        "error": error[1] if error else None,
        "knowledge_path": KNOWLEDGE_PATH,
    }
    return render_page(
        request, "knowledge_form.html", context, status=400 if error is not None else 200
    )


@requires(Role.LEAD)
async def new_article_form(request: web.Request) -> web.Response:
    """``GET /knowledge/new[?rule=ID]``: an empty article form."""
    values = _values(None)
    values["rule_id"] = request.query.get("rule", "")[:96]
    return _form_page(request, values, action=KNOWLEDGE_PATH)


async def _posted(request: web.Request) -> tuple[dict[str, str], str | None]:
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    values: dict[str, str] = {}
    too_long = None
    for name in FORM_FIELDS:
        raw = form.get(name, "")
        text = raw if isinstance(raw, str) else ""
        if len(text) > MAX_FORM_FIELD:
            too_long = too_long or name
            text = text[:MAX_FORM_FIELD]
        values[name] = text
    values["base_revision"] = str(form.get("base_revision", ""))[:12]
    return values, too_long


def _content(values: dict[str, str]) -> ArticleContent:
    def lines(name: str) -> tuple[str, ...]:
        return tuple(values[name].splitlines())

    return ArticleContent(
        title_en=values["title_en"],
        title_zh=values["title_zh"],
        symptoms_en=lines("symptoms_en"),
        symptoms_zh=lines("symptoms_zh"),
        steps_en=lines("steps_en"),
        steps_zh=lines("steps_zh"),
        models=tuple(m for m in values["models"].replace("\n", ",").split(",")),
        rule_id=values["rule_id"],
    )


def _input_error(exc: ArticleInputError) -> tuple[str, str]:
    return exc.field, exc.reason


@requires(Role.LEAD)
async def create_article_form(request: web.Request) -> web.Response:
    """``POST /knowledge``: save a new article and show it, or the form with the reason."""
    values, too_long = await _posted(request)
    if too_long is not None:
        error = (too_long, _("this field is too long"))
        return _form_page(request, values, action=KNOWLEDGE_PATH, error=error)
    try:
        article = await create_article(
            request.app[ENGINE_KEY], _content(values), principal(request).actor
        )
    except ArticleInputError as exc:
        return _form_page(request, values, action=KNOWLEDGE_PATH, error=_input_error(exc))
    raise web.HTTPSeeOther(entry_path(str(article.id)))


@requires(Role.LEAD)
async def edit_article_form(request: web.Request) -> web.Response:
    """``GET /knowledge/{entry_id}/edit``: the article's form, filled in."""
    article_id = article_id_of(request.match_info["entry_id"])
    entry = await _entry(request)
    content = ArticleContent(
        title_en=entry.en.title,
        title_zh=entry.zh.title,
        symptoms_en=entry.en.symptoms,
        symptoms_zh=entry.zh.symptoms,
        steps_en=entry.en.steps,
        steps_zh=entry.zh.steps,
        models=entry.models,
        rule_id=entry.rule_ids[0] if entry.rule_ids else None,
    )
    return _form_page(
        request, _values(content), action=entry_path(str(article_id)), revision=entry.revision
    )


@requires(Role.LEAD)
async def save_article_form(request: web.Request) -> web.Response:
    """``POST /knowledge/{entry_id}``: save the edit as a new revision."""
    article_id = article_id_of(request.match_info["entry_id"])
    action = entry_path(str(article_id))
    values, too_long = await _posted(request)
    base = values.pop("base_revision")
    revision = int(base) if base.isdigit() else None
    if too_long is not None:
        error = (too_long, _("this field is too long"))
        return _form_page(request, values, action=action, revision=revision, error=error)
    try:
        await edit_article(
            request.app[ENGINE_KEY],
            article_id,
            _content(values),
            principal(request).actor,
            base_revision=revision,
        )
    except ArticleInputError as exc:
        return _form_page(
            request, values, action=action, revision=revision, error=_input_error(exc)
        )
    except ArticleConflictError as exc:
        return _form_page(
            request, values, action=action, revision=exc.revision, error=("", str(exc))
        )
    except ArticleNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    raise web.HTTPSeeOther(action)


@requires(Role.VIEWER)
async def article_history(request: web.Request) -> web.Response:
    """``GET /knowledge/{entry_id}/history``: every revision, newest first, who and what."""
    article_id = article_id_of(request.match_info["entry_id"])
    entry = await _entry(request)
    revisions = await library(request).history(article_id)
    context = {
        "entry": entry,
        "title": entry.shown(reader_reads_chinese()).title,
        "revisions": revisions,
        "entry_path": entry_path(entry.id),
        "knowledge_path": KNOWLEDGE_PATH,
    }
    return render_page(request, "knowledge_history.html", context)


def add_routes(app: web.Application) -> None:
    """Register this module's routes on ``app``; give templates ``knowledge_link_for``."""
    app.router.add_get(KNOWLEDGE_PATH, knowledge_list)
    app.router.add_post(KNOWLEDGE_PATH, create_article_form)
    app.router.add_get(NEW_PATH, new_article_form)
    app.router.add_get(KNOWLEDGE_PATH + "/{entry_id}", knowledge_entry)
    app.router.add_post(KNOWLEDGE_PATH + "/{entry_id}", save_article_form)
    app.router.add_get(KNOWLEDGE_PATH + "/{entry_id}/edit", edit_article_form)
    app.router.add_get(KNOWLEDGE_PATH + "/{entry_id}/history", article_history)
    aiohttp_jinja2.get_env(app).globals["knowledge_link_for"] = knowledge_link_for
