"""``/api/v1/rollouts`` through a real HTTP server over a migrated SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.store.accounts import Role, create_api_token, list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest

SECRET = bytes(range(32))
PROBLEM = "application/problem+json"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def fleet(sqlite_engine: AsyncEngine) -> AsyncEngine:
    for index in range(20):
        zone = "Europe/Berlin" if index % 2 else "America/New_York"
        await add_terminal(sqlite_engine, f"T-{index:02d}", firmware="5.2.1", timezone=zone)
    await add_terminal(sqlite_engine, "T-CURRENT", firmware="5.3.0")
    await add_terminal(sqlite_engine, "T-A920", model="A920")
    await add_artifact(sqlite_engine, signed_manifest("5.3.0"))
    return sqlite_engine


@pytest.fixture
async def client(fleet: AsyncEngine) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(fleet, session_secret=SECRET))) as test_client:
        yield test_client


async def _auth(engine: AsyncEngine, role: Role, name: str | None = None) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, name or f"test-{role}", role)
    return {"Authorization": f"Bearer {token}"}


async def _call(
    client: Client, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> tuple[int, Any, str]:
    response = await client.request(method, path, headers=headers, **kwargs)
    return response.status, await response.json(), response.content_type


def _body(**policy: Any) -> dict[str, Any]:
    return {
        "name": "pos-os 5.3.0 everywhere",
        "artifact": "pos-os@5.3.0",
        "target": {"models": ["V400m", "A920"]},
        "policy": {"waves": [{"percent": 10}, {"percent": 50}, {"percent": 100}], **policy},
        "reason_code": "security_fix",
        "reason": "CVE-2026-0042",
    }


async def _audit_actions(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as conn:
        return [(e.actor, e.action, e.target) for e in await list_audit(conn, limit=200)]


async def test_ops_creates_previews_starts_and_steers_a_rollout(
    client: Client, fleet: AsyncEngine
) -> None:
    ops = await _auth(fleet, Role.OPS)
    status, created, _ = await _call(client, "POST", "/api/v1/rollouts", ops, json=_body())
    assert status == 201, created
    rid = created["id"]
    assert created["state"] == "draft" and created["artifact"] == "pos-os@5.3.0"
    assert created["target_text"] == "models A920, V400m"
    assert [w["percent"] for w in created["policy"]["waves"]] == [10.0, 50.0, 100.0]
    assert created["policy"]["offers_per_minute"] == 60  # a default

    viewer = await _auth(fleet, Role.VIEWER)
    status, problem, content_type = await _call(
        client, "GET", f"/api/v1/rollouts/{rid}/preview", viewer
    )
    assert (status, content_type) == (409, PROBLEM)
    assert "draft" in problem["detail"]

    status, preview, _ = await _call(client, "POST", f"/api/v1/rollouts/{rid}/preview", ops)
    assert status == 200, preview
    assert preview["rollout"]["state"] == "previewed"
    assert preview["terminals"] == 20
    assert [w["terminals"] for w in preview["waves"]] == [2, 8, 10]
    assert preview["excluded_counts"] == {"already_current": 1, "wrong_model": 1}
    assert {e["terminal_id"] for e in preview["excluded"]} == {"T-CURRENT", "T-A920"}
    assert preview["warnings"] == []
    first = [r for r in preview["rows"] if r["wave"] == 0]
    assert len(first) == 2 and all(r["earliest_offer"] and r["earliest_install"] for r in first)

    # A viewer reads the same preview without moving anything.
    status, again, _ = await _call(
        client, "GET", f"/api/v1/rollouts/{rid}/preview?per_wave=1", viewer
    )
    assert status == 200 and len(again["rows"]) == 3 and again["terminals"] == 20

    reason = {"reason_code": "security_fix", "reason": "go"}
    status, started, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/start", ops, json=reason
    )
    assert status == 200, started
    assert started["state"] == "running"
    assert [w["planned"] for w in started["waves"]] == [2, 8, 10]
    assert started["excluded"] == {"already_current": 1, "wrong_model": 1}

    support = await _auth(fleet, Role.SUPPORT)
    brake = {"reason_code": "other", "reason": "Saturday rush at the Berlin shops"}
    status, paused, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/pause", support, json=brake
    )
    assert status == 200 and paused["state"] == "paused", paused
    assert "Saturday rush" in paused["paused_reason"]

    status, listed, _ = await _call(client, "GET", "/api/v1/rollouts?state=paused", viewer)
    assert status == 200 and [r["id"] for r in listed["items"]] == [rid]
    assert "transitions" not in listed["items"][0]
    status, listed, _ = await _call(client, "GET", "/api/v1/rollouts?state=running", viewer)
    assert listed["items"] == []

    status, shown, _ = await _call(client, "GET", f"/api/v1/rollouts/{rid}", viewer)
    assert [(t["command"], t["actor"]) for t in shown["transitions"]] == [
        ("create", "token:test-ops"),
        ("preview", "token:test-ops"),
        ("start", "token:test-ops"),
        ("pause", "token:test-support"),
    ]
    assert shown["transitions"][-1]["reason_text"] == "Saturday rush at the Berlin shops"

    status, aborted, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/abort", ops, json={"reason_code": "bug_fix"}
    )
    assert status == 200 and aborted["state"] == "aborted"
    audit = await _audit_actions(fleet)
    for action in ("create", "preview", "start", "pause", "abort"):
        assert any(a == f"rollout.{action}" and t == f"rollout:{rid}" for _, a, t in audit), action


async def test_a_support_user_cannot_start_and_the_refusal_is_audited(
    client: Client, fleet: AsyncEngine
) -> None:
    ops = await _auth(fleet, Role.OPS)
    _, created, _ = await _call(client, "POST", "/api/v1/rollouts", ops, json=_body())
    rid = created["id"]
    await _call(client, "POST", f"/api/v1/rollouts/{rid}/preview", ops)

    support = await _auth(fleet, Role.SUPPORT)
    status, problem, content_type = await _call(
        client,
        "POST",
        f"/api/v1/rollouts/{rid}/start",
        support,
        json={"reason_code": "feature", "reason": "let me"},
    )
    assert (status, content_type) == (403, PROBLEM)
    assert problem["status"] == 403 and problem["code"] == "rollout_forbidden"
    assert "needs the ops role" in problem["detail"]
    assert ("token:test-support", "rollout.start.refused", f"rollout:{rid}") in (
        await _audit_actions(fleet)
    )
    status, shown, _ = await _call(client, "GET", f"/api/v1/rollouts/{rid}", support)
    assert shown["state"] == "previewed"  # nothing moved

    # Creating needs ops too, and that refusal is in the audit log as well.
    status, problem, _ = await _call(client, "POST", "/api/v1/rollouts", support, json=_body())
    assert status == 403 and problem["code"] == "rollout_forbidden"
    assert ("token:test-support", "rollout.create.refused", "rollout") in (
        await _audit_actions(fleet)
    )
    # A viewer does not get through the door to change anything.
    viewer = await _auth(fleet, Role.VIEWER)
    status, problem, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/pause", viewer, json={"reason_code": "other"}
    )
    assert status == 403 and problem["code"] == "forbidden"


async def test_a_start_without_the_second_approver_is_refused_and_audited(
    client: Client, fleet: AsyncEngine
) -> None:
    olga = await _auth(fleet, Role.OPS, "olga")
    piotr = await _auth(fleet, Role.OPS, "piotr")
    body = _body(require_second_approver=True)
    _, created, _ = await _call(client, "POST", "/api/v1/rollouts", olga, json=body)
    rid = created["id"]
    await _call(client, "POST", f"/api/v1/rollouts/{rid}/preview", olga)
    why = {"reason_code": "security_fix", "reason": "CVE-2026-0042"}

    status, problem, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/start", olga, json=why
    )
    assert status == 403 and "second approver" in problem["detail"], problem
    status, problem, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/approve", olga, json=why
    )
    assert status == 403 and "cannot approve" in problem["detail"], problem
    refused = [a for actor, a, _ in await _audit_actions(fleet) if actor == "token:olga"]
    assert {"rollout.start.refused", "rollout.approve.refused"} <= set(refused)

    status, approved, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/approve", piotr, json=why
    )
    assert status == 200, approved
    assert (approved["state"], approved["approved_by"]) == ("awaiting_approval", "token:piotr")
    status, started, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/start", olga, json=why
    )
    assert status == 200 and started["state"] == "running", started


async def test_bad_requests_are_problems_that_name_the_field(
    client: Client, fleet: AsyncEngine
) -> None:
    ops = await _auth(fleet, Role.OPS)

    async def create(body: Any) -> tuple[int, Any]:
        status, problem, content_type = await _call(
            client, "POST", "/api/v1/rollouts", ops, json=body
        )
        assert content_type == (PROBLEM if status >= 400 else "application/json")
        return status, problem

    status, problem = await create({**_body(), "colour": "red"})
    assert status == 400 and [p["name"] for p in problem["invalid_params"]] == ["colour"]
    status, problem = await create(
        {**_body(), "policy": {"waves": [{"percent": 10}, {"percent": 50}]}}
    )
    assert status == 400 and problem["invalid_params"][0]["name"] == "policy.waves[1]"
    assert "must be 100 %" in problem["detail"]
    status, problem = await create({**_body(), "policy": {"offers_per_minute": 0}})
    assert problem["invalid_params"][0]["name"] == "policy.offers_per_minute"
    status, problem = await create({**_body(), "target": {"colours": ["red"]}})
    assert status == 400 and problem["invalid_params"][0]["name"] == "target"
    status, problem = await create({**_body(), "reason_code": "because"})
    assert status == 400 and problem["invalid_params"][0]["name"] == "reason_code"
    status, problem = await create({**_body(), "reason_code": "other", "reason": " "})
    assert status == 400 and problem["invalid_params"] == [
        {"name": "reason", "reason": "reason code 'other' needs a reason text"}
    ]
    status, problem = await create({**_body(), "artifact": "pos-os@9.9.9"})
    assert status == 400 and problem["invalid_params"][0]["name"] == "artifact"
    assert "no artifact pos-os@9.9.9" in problem["detail"]
    response = await client.post("/api/v1/rollouts", data="[1, 2", headers=ops)
    assert response.status == 400 and response.content_type == PROBLEM

    _, created, _ = await _call(client, "POST", "/api/v1/rollouts", ops, json=_body())
    rid = created["id"]
    reason = {"reason_code": "bug_fix"}
    status, problem, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{rid}/pause", ops, json=reason
    )
    assert status == 409 and "cannot pause a rollout that is draft" in problem["detail"]
    status, problem, _ = await _call(client, "POST", f"/api/v1/rollouts/{rid}/start", ops, json={})
    assert status == 400 and problem["invalid_params"][0]["name"] == "reason_code"
    status, problem, _ = await _call(client, "GET", "/api/v1/rollouts/999", ops)
    assert status == 404 and problem["detail"] == "no rollout #999"
    status, problem, _ = await _call(client, "GET", "/api/v1/rollouts/²", ops)
    assert status == 400 and problem["invalid_params"][0]["name"] == "rollout_id"
    status, problem, _ = await _call(client, "POST", f"/api/v1/rollouts/{rid}/explode", ops)
    assert status == 404 and problem["code"] == "not_found"
    status, problem, _ = await _call(client, "GET", "/api/v1/rollouts?state=exploded", ops)
    assert status == 400 and "state is one of draft" in problem["detail"]
    status, problem, _ = await _call(client, "GET", "/api/v1/rollouts?colour=red", ops)
    assert status == 400 and problem["invalid_params"][0]["name"] == "colour"
    response = await client.get("/api/v1/rollouts")
    assert response.status == 401 and response.content_type == PROBLEM


async def test_the_preview_warns_of_settings_that_will_surprise(
    client: Client, fleet: AsyncEngine
) -> None:
    ops = await _auth(fleet, Role.OPS)
    window = {"start": "01:00", "end": "02:00", "weekdays": [5]}
    body = {**_body(), "policy": {"waves": [{"percent": 100}], "window": window}}
    _, created, _ = await _call(client, "POST", "/api/v1/rollouts", ops, json=body)
    status, preview, _ = await _call(
        client, "POST", f"/api/v1/rollouts/{created['id']}/preview", ops
    )
    assert status == 200
    warnings = " ".join(preview["warnings"])
    assert "longer than the Action deadline" in warnings and "without a canary" in warnings
