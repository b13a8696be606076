"""The OpenAPI document of the real app: complete, consistent, served, shown and exported."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.cli import main
from posfleet.dashboard import (
    create_app,
    firmware_actions_api,
    firmware_artifacts_api,
    incidents_api,
    rollouts_api,
    terminals_api,
)
from posfleet.dashboard.access import access_rule
from posfleet.dashboard.openapi_document import api_routes, undocumented_routes
from posfleet.dashboard.openapi_page import OPENAPI_PATH, REFERENCE_PATH

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def app(sqlite_engine: AsyncEngine) -> web.Application:
    return create_app(sqlite_engine, session_secret=bytes(32))


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def document(client: Client) -> dict[str, Any]:
    response = await client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    found: dict[str, Any] = await response.json()
    return found


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_api_v1_route_declares_its_operation(app: web.Application) -> None:
    # New /api/v1 routes must carry @api_operation(...) beside @requires(...), or they
    # are missing from the document and from the reference page.
    assert undocumented_routes(app) == []


async def test_document_lists_every_route_with_its_role_and_parameters(
    app: web.Application, document: dict[str, Any]
) -> None:
    assert document["openapi"] == "3.1.0"
    routes = list(api_routes(app))
    listed = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert listed == {(r.method, r.path) for r in routes}
    for route in routes:
        operation = document["paths"][route.path][route.method.lower()]
        rule = access_rule(route.handler)
        assert rule is not None
        role = rule.role.value if rule.role is not None else None
        assert operation["x-posfleet-role"] == role, route
        assert bool(operation["security"]) == (role is not None), route
        if role is not None:
            assert {"401", "403"} <= set(operation["responses"]), route
        in_path = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert in_path == re.findall(r"\{(\w+)\}", route.path), route
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    schemas = document["components"]["schemas"]
    for ref in set(_refs(document)):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


@pytest.mark.parametrize(
    ("module", "path"),
    [
        (terminals_api, "/api/v1/terminals"),
        (incidents_api, "/api/v1/incidents"),
        (firmware_artifacts_api, "/api/v1/firmware/artifacts"),
        (firmware_actions_api, "/api/v1/firmware/actions"),
        (rollouts_api, "/api/v1/rollouts"),
    ],
)
async def test_list_parameters_are_the_ones_the_handler_takes(
    document: dict[str, Any], module: ModuleType, path: str
) -> None:
    parameters = document["paths"][path]["get"]["parameters"]
    assert {p["name"] for p in parameters} == set(module.LIST_PARAMETERS)


async def test_document_describes_answers_and_problems_from_the_models(
    document: dict[str, Any],
) -> None:
    listing = document["paths"]["/api/v1/terminals"]["get"]
    answer = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/TerminalPage"}
    query = {p["name"]: p for p in listing["parameters"]}
    limit = query["limit"]["schema"]["anyOf"][0]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 500)
    assert query["limit"]["description"] == "Page size."
    assert {"after", "online", "q", "sort"} <= set(query)
    problem = listing["responses"]["400"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert {"type", "title", "status", "detail", "code"} <= set(
        document["components"]["schemas"]["Problem"]["properties"]
    )
    note = document["paths"]["/api/v1/incidents/{incident_id}/notes"]["post"]
    assert "201" in note["responses"]
    assert note["x-posfleet-role"] == "support"
    upload = document["paths"]["/api/v1/firmware/artifacts"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"200", "201"} <= set(upload["responses"])


async def test_the_document_and_the_reference_page_need_no_token(client: Client) -> None:
    page = await client.get(REFERENCE_PATH)
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert "<script" not in html
    assert "GET /api/v1/terminals" in html
    assert 'id="schema-TerminalRecord"' in html
    assert "support</span>" in html  # the role a mutating incident operation needs
    refused = await client.get(OPENAPI_PATH, params={"format": "yaml"})
    assert refused.status == 400
    assert refused.content_type == "application/problem+json"


async def test_api_export_writes_the_document_the_server_serves(
    tmp_path: Path, document: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "openapi.json"
    # The command runs its own event loop, as from a shell: off this test's loop.
    assert await asyncio.to_thread(main, ["api", "export", str(target)]) == 0
    assert "operations" in capsys.readouterr().out
    assert json.loads(target.read_text(encoding="utf-8")) == document
