"""``/firmware``: the firmware and rollouts pages (Jinja2 templates), and their forms.

Thin handlers over :class:`~posfleet.dashboard.rollout_service.RolloutService`, the same
operations as the API: parse, call, render. Reading needs the viewer role. The forms
are CSRF-protected POSTs answered with a redirect (post/redirect/get); the store decides
who may create, start, resume, roll back or approve, so a refused attempt is a 403 page
and a line in the audit log. Live parts (the rollouts table, a rollout's state, buttons
and waves) are re-fetched by ``live-section.js`` from ``/fragments/...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from posfleet.dashboard.access import FRAGMENT_PREFIX, principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.rollout_body import (
    MAX_REASON,
    REASON_CODES,
    BodyInvalidError,
    PolicyTexts,
    names,
    policy_json,
)
from posfleet.dashboard.rollout_service import RolloutService
from posfleet.dashboard.rollout_views import (
    NEW_ROLLOUT_PATH,
    ROLLOUTS_PATH,
    detail_context,
    list_rows,
    live_context,
    rollout_path,
)
from posfleet.dashboard.rollouts_api import rollout_id
from posfleet.dashboard.templating import _, render_fragment, render_page
from posfleet.firmware.artifacts import list_artifacts
from posfleet.firmware.rollout_model import RolloutState
from posfleet.firmware.rollout_transitions import REQUIRED_ROLE
from posfleet.store.accounts import Role

FIRMWARE_PATH = "/firmware"
ROLLOUTS_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}rollouts"
ARTIFACTS_SHOWN = 50
ROLLOUTS_SHOWN = 50
MAX_FIELD = 2000
PREVIEWABLE = (RolloutState.PREVIEWED, RolloutState.AWAITING_APPROVAL)
"""States whose page shows the dry run: planned, not started."""

FORM_FIELDS = (
    "name",
    "artifact",
    "rollback_artifact",
    "models",
    "merchants",
    "sites",
    "tags",
    "from_versions",
    "waves",
    "success_threshold",
    "error_threshold",
    "soak",
    "abort_on_error",
    "offers_per_minute",
    "jitter",
    "window",
    "weekdays",
    "deadline",
    "max_offline",
    "second_approver",
    "gate_reader_errors",
    "gate_declines",
    "gate_reboots",
    "gate_min_terminals",
    "reason_code",
    "reason",
)
FORM_DEFAULTS = {
    "waves": "1%,10%,50%,100%",
    "success_threshold": "95%",
    "error_threshold": "10%",
    "soak": "30m",
    "offers_per_minute": "60",
    "jitter": "30s",
    "window": "22:00-06:00",
    "deadline": "72h",
    "max_offline": "7d",
    "gate_reader_errors": "2",
    "gate_declines": "2",
    "gate_reboots": "0.5",
    "gate_min_terminals": "1",
}
"""What the create form shows to begin with: the policy's defaults, written as typed."""


def _service(request: web.Request) -> RolloutService:
    who = principal(request)
    return RolloutService.for_request(request.app, actor=who.actor, role=who.role)


async def _rollout_rows(request: web.Request) -> list[dict[str, Any]]:
    return list_rows(await _service(request).list(limit=ROLLOUTS_SHOWN))


@requires(Role.VIEWER)
async def firmware_overview(request: web.Request) -> web.Response:
    """``GET /firmware``: rollouts (refreshed live) and the stored artifacts."""
    async with request.app[ENGINE_KEY].connect() as conn:
        artifacts = await list_artifacts(conn, limit=ARTIFACTS_SHOWN)
    context = {
        "artifacts": artifacts,
        "rollouts": await _rollout_rows(request),
        "can_create": principal(request).role.permits(REQUIRED_ROLE["create"]),
        "new_rollout_path": NEW_ROLLOUT_PATH,
        "refresh_url": ROLLOUTS_FRAGMENT_PATH,
    }
    return render_page(request, "firmware.html", context, scripts=["live-section.js"])


@requires(Role.VIEWER)
async def rollouts_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/rollouts``: the rollouts table alone, for the refresh script."""
    return render_fragment(request, "rollout_list.html", {"rollouts": await _rollout_rows(request)})


# -- creating ------------------------------------------------------------------------------


async def _new_form(
    request: web.Request,
    values: Mapping[str, str],
    *,
    errors: Mapping[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[ENGINE_KEY].connect() as conn:
        artifacts = await list_artifacts(conn, limit=ARTIFACTS_SHOWN)
    context = {
        "artifacts": artifacts,
        "values": values,
        "errors": dict(errors or {}),
        "problem": problem,
        "reason_codes": REASON_CODES,
        "firmware_path": FIRMWARE_PATH,
        "create_path": ROLLOUTS_PATH,
        "reason_max": MAX_REASON,
    }
    return render_page(request, "rollout_new.html", context, status=status)


@requires(Role.OPS)
async def new_rollout(request: web.Request) -> web.Response:
    """``GET /firmware/rollouts/new[?artifact=ID]``: the create form, with the defaults."""
    values = dict(FORM_DEFAULTS)
    chosen = request.query.get("artifact", "")
    if chosen.isascii() and chosen.isdigit():
        values["artifact"] = chosen
    return await _new_form(request, values)


def _form_values(form: MultiMapping[object]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in FORM_FIELDS:
        raw = form.get(name)
        if raw is None:
            continue
        if not isinstance(raw, str) or len(raw) > MAX_FIELD:
            raise InvalidParameterError(name, _("%s is too long") % name)
        values[name] = raw.strip()
    return values


_TEXT_FIELDS = {
    "waves": "waves",
    "success threshold": "success_threshold",
    "error threshold": "error_threshold",
    "soak": "soak",
    "offers per minute": "offers_per_minute",
    "jitter": "jitter",
    "window": "window",
    "weekday": "weekdays",
    "action deadline": "deadline",
    "max offline": "max_offline",
    "reader error rate": "gate_reader_errors",
    "decline rate": "gate_declines",
    "reboots per terminal": "gate_reboots",
    "min terminals": "gate_min_terminals",
}
_BODY_FIELDS = {
    "policy.waves": "waves",
    "policy.offers_per_minute": "offers_per_minute",
    "policy.jitter_s": "jitter",
    "policy.window": "window",
    "policy.action_deadline": "deadline",
    "policy.max_offline": "max_offline",
    "policy.gate.reader_error_rate_points": "gate_reader_errors",
    "policy.gate.decline_rate_points": "gate_declines",
    "policy.gate.reboots_per_terminal": "gate_reboots",
    "policy.gate.min_terminals": "gate_min_terminals",
    "target.firmware_versions": "from_versions",
}


def _form_field(body_field: str) -> str:
    """The form field a body field's error belongs beside."""
    if body_field in _BODY_FIELDS:
        return _BODY_FIELDS[body_field]
    if body_field.startswith("policy.waves"):
        return "waves"
    if body_field.startswith("policy.success") or "success_threshold" in body_field:
        return "success_threshold"
    if "error_threshold" in body_field:
        return "error_threshold"
    return body_field


def _body_of(values: Mapping[str, str]) -> dict[str, Any]:
    """The API's create body from the form; ValueError naming the form field."""
    try:
        policy = policy_json(
            PolicyTexts(
                waves=values.get("waves") or None,
                success_threshold=values.get("success_threshold") or None,
                error_threshold=values.get("error_threshold") or None,
                soak=values.get("soak") or None,
                abort_on_error=bool(values.get("abort_on_error")),
                offers_per_minute=values.get("offers_per_minute") or None,
                jitter=values.get("jitter") or None,
                window=values.get("window") or None,
                weekdays=values.get("weekdays") or None,
                action_deadline=values.get("deadline") or None,
                max_offline=values.get("max_offline") or None,
                require_second_approver=bool(values.get("second_approver")),
                gate={
                    "reader_error_rate_points": values.get("gate_reader_errors", ""),
                    "decline_rate_points": values.get("gate_declines", ""),
                    "reboots_per_terminal": values.get("gate_reboots", ""),
                    "min_terminals": values.get("gate_min_terminals", ""),
                },
            )
        )
    except ValueError as exc:
        text = str(exc)
        field = next((f for word, f in _TEXT_FIELDS.items() if word in text.lower()), "waves")
        raise BodyInvalidError([(field, text)]) from None
    return {
        "name": values.get("name", ""),
        "artifact": values.get("artifact", ""),
        **(
            {"rollback_artifact": values["rollback_artifact"]}
            if values.get("rollback_artifact")
            else {}
        ),
        "target": {
            "models": names(values.get("models")),
            "merchant_ids": names(values.get("merchants")),
            "site_ids": names(values.get("sites")),
            "tags": names(values.get("tags")),
            "firmware_versions": names(values.get("from_versions")),
        },
        "policy": policy,
        "reason_code": values.get("reason_code", ""),
        "reason": values.get("reason", ""),
    }


@requires(Role.SUPPORT)
async def create_rollout_action(request: web.Request) -> web.Response:
    """``POST /firmware/rollouts``: create the draft and run its dry run, then show it.

    A field that is off brings the form back with what was typed and the reason beside
    the field (400).
    """
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    values = _form_values(form)
    service = _service(request)
    try:
        created = await service.create(_body_of(values))
    except BodyInvalidError as exc:
        errors = {_form_field(name): why for name, why in exc.problems}
        unplaced = [why for name, why in exc.problems if _form_field(name) not in FORM_FIELDS]
        problem = "; ".join(unplaced) or _("Not created: correct the fields marked below.")
        return await _new_form(request, values, errors=errors, problem=problem, status=400)
    await service.preview(created.id, store=True)
    raise web.HTTPSeeOther(rollout_path(created.id))


# -- one rollout ---------------------------------------------------------------------------


@requires(Role.VIEWER)
async def rollout_detail(request: web.Request) -> web.Response:
    """``GET /firmware/rollouts/{id}``: policy, live state and waves, the dry run before
    the start, the buttons the state and the role allow, and the history."""
    rid = rollout_id(request)
    service = _service(request)
    record = await service.get(rid)
    preview = None
    if record.state in PREVIEWABLE:
        record, preview = await service.preview(rid, store=False)
    who = principal(request)
    context = detail_context(record, preview, who.actor, who.role)
    context["reason_codes"] = REASON_CODES
    return render_page(request, "rollout.html", context, scripts=["live-section.js"])


@requires(Role.VIEWER)
async def rollout_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/rollouts/{id}``: the rollout's live section alone."""
    record = await _service(request).get(rollout_id(request))
    who = principal(request)
    return render_fragment(request, "rollout_live.html", live_context(record, who.actor, who.role))


async def _reason_form(request: web.Request) -> dict[str, str]:
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    values = _form_values(form)
    return {"reason_code": values.get("reason_code", ""), "reason": values.get("reason", "")}


@requires(Role.OPS)
async def preview_action(request: web.Request) -> web.Response:
    """``POST /firmware/rollouts/{id}/preview``: the dry run of a draft (it becomes
    previewed), shown on the rollout's page."""
    rid = rollout_id(request)
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    await _service(request).preview(rid, store=True)
    raise web.HTTPSeeOther(rollout_path(rid))


@requires(Role.SUPPORT)
async def command_action(request: web.Request) -> web.Response:
    """``POST /firmware/rollouts/{id}/{command}`` with ``reason_code`` and ``reason``."""
    rid = rollout_id(request)
    body = await _reason_form(request)
    await _service(request).command(rid, request.match_info["command"], body)
    raise web.HTTPSeeOther(rollout_path(rid))


def add_routes(app: web.Application) -> None:
    """Register the firmware pages, their fragments and forms."""
    from posfleet.dashboard.rollout_service import COMMANDS

    app.router.add_get(FIRMWARE_PATH, firmware_overview)
    app.router.add_get(ROLLOUTS_FRAGMENT_PATH, rollouts_fragment)
    app.router.add_get(NEW_ROLLOUT_PATH, new_rollout)
    app.router.add_post(ROLLOUTS_PATH, create_rollout_action)
    app.router.add_get(f"{ROLLOUTS_PATH}/{{rollout_id}}", rollout_detail)
    app.router.add_get(f"{ROLLOUTS_FRAGMENT_PATH}/{{rollout_id}}", rollout_fragment)
    app.router.add_post(f"{ROLLOUTS_PATH}/{{rollout_id}}/preview", preview_action)
    commands = "|".join(COMMANDS)
    app.router.add_post(f"{ROLLOUTS_PATH}/{{rollout_id}}/{{command:{commands}}}", command_action)
