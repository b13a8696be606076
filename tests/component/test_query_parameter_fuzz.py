"""Every GET route, page or API, fed hostile query strings by hypothesis: never a 5xx.

The routes come from the real app's route table (as in test_role_matrix.py), and the
parameter names from its OpenAPI document: each route gets its own documented
parameters plus those of every other operation (a page takes the same ``before``,
``limit``, ``state``... as its API twin). The values are what broke the API before
(issue 17): integers far past 2**63, negative ones, digits that are not ASCII (``²``,
``٣``), empty values, very long texts and any unicode, sometimes the same name twice.
The app runs on a real port and requests go through ``requests`` from a worker thread,
with an admin's token (API) or session cookie (pages). A bounded number of examples per
route keeps the test at a few seconds however many routes there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.access import API_PREFIX, SESSION_COOKIE
from posfleet.dashboard.app_keys import SIGNER_KEY
from posfleet.dashboard.firmware_download import FirmwareDelivery
from posfleet.dashboard.openapi_page import openapi_document
from posfleet.firmware.artifact_store import ArtifactStore
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.store.accounts import Role, create_api_token
from posfleet.store.schema import users
from posfleet.store.sessions import start_session
from tests.harness.firmware_release import release_key, trusting
from tests.harness.route_paths import concrete_path

SECRET = bytes(range(32, 64))
EXAMPLES_PER_ROUTE = 3
UNAVAILABLE = 503
"""Documented on operations that need a part this app lacks (a broker)."""

HOSTILE_NUMBERS = (
    "99999999999999999999999",
    "9223372036854775808",
    "-9223372036854775809",
    "²",
    "٣",
    "\uff11\uff12",  # fullwidth 12
    "1e999",
    "NaN",
    "0x10",
    "-0",
    "9" * 5000,
)


@dataclass(frozen=True, slots=True)
class Target:
    """One GET route: a concrete path and the parameter names tried on it."""

    pattern: str
    path: str
    names: tuple[str, ...]


def _targets(app: web.Application) -> list[Target]:
    document = openapi_document(app)
    own: dict[str, tuple[str, ...]] = {}
    every: set[str] = set()
    for path, operations in document["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        names = tuple(p["name"] for p in get.get("parameters", []) if p["in"] == "query")
        own[path] = names
        every.update(names)
    found = []
    for route in app.router.routes():
        if route.method != "GET" or isinstance(route.resource, web.StaticResource):
            continue
        assert route.resource is not None
        path = concrete_path(route.resource)
        if path is None:
            continue
        pattern = route.resource.canonical
        names = own.get(pattern, ()) + tuple(sorted(every - set(own.get(pattern, ()))))
        found.append(Target(pattern, path, names))
    return found


def _values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_NUMBERS),
        st.integers(min_value=-(2**200), max_value=2**200).map(str),
        st.just(""),
        st.text(max_size=40),
        st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=25),
        st.integers(min_value=300, max_value=5000).map(lambda n: "x" * n),
    )


def _queries(target: Target) -> st.SearchStrategy[list[tuple[str, str]]]:
    # Mostly the route's own parameters, which reach the most code.
    first = target.names[: max(1, len(target.names) // 2)] if target.names else ("x",)
    name = st.one_of(st.sampled_from(first), st.sampled_from(target.names or ("x",)))
    return st.lists(st.tuples(name, _values()), min_size=1, max_size=4)


@pytest.fixture
async def served(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[BaseTestServer, web.Application, list[Target]]]:
    delivery = FirmwareDelivery(
        store=ArtifactStore(tmp_path / "artifacts"),
        trusted=trusting(release_key(tmp_path / "keys", "release-2026")),
        tokens=DownloadTokens(bytes(32)),
        max_upload_bytes=1024 * 1024,
    )
    app = create_app(sqlite_engine, session_secret=SECRET, firmware=delivery)
    targets = _targets(app)
    async with TestServer(app, host="127.0.0.1") as server:
        yield server, app, targets


async def _credentials(app: web.Application, engine: AsyncEngine) -> dict[str, str]:
    now = utcnow()
    async with engine.begin() as conn:
        user_id = (
            await conn.execute(
                sa.insert(users)
                .values(
                    username="fuzz-admin",
                    password_hash="!",
                    role=Role.ADMIN.value,
                    created_at=now,
                    disabled=False,
                )
                .returning(users.c.id)
            )
        ).scalar_one()
        session, cookie = app[SIGNER_KEY].issue(user_id, now)
        await start_session(conn, session.session_id, user_id, now, now + timedelta(hours=1))
        token = await create_api_token(conn, "fuzz-admin", Role.ADMIN)
    return {"cookie": cookie, "token": token}


def _fuzz_route(
    session: requests.Session,
    url: str,
    target: Target,
    headers: dict[str, str],
    documented: dict[str, object],
) -> list[str]:
    failures: list[str] = []

    @given(query=_queries(target))
    @settings(
        max_examples=EXAMPLES_PER_ROUTE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def example(query: list[tuple[str, str]]) -> None:
        with session.get(
            url,
            params=query,
            headers=headers,
            allow_redirects=False,
            stream=True,  # a live stream's headers are enough
            timeout=10,
        ) as response:
            status = response.status_code
        if status >= 500 and not (status == UNAVAILABLE and str(status) in documented):
            shown = [(n, v if len(v) <= 30 else v[:30] + "...") for n, v in query]
            failures.append(f"GET {target.pattern} {shown}: {status}")

    example()
    return failures


def _fuzz(base_url: str, targets: list[Target], credentials: dict[str, str]) -> list[str]:
    failures: list[str] = []
    with requests.Session() as session:
        document = session.get(base_url + "/api/v1/openapi.json", timeout=10).json()
        for target in targets:
            if target.path.startswith(API_PREFIX):
                headers = {"Authorization": f"Bearer {credentials['token']}"}
            else:
                headers = {"Cookie": f"{SESSION_COOKIE}={credentials['cookie']}"}
            operation = document["paths"].get(target.pattern, {}).get("get", {})
            failures += _fuzz_route(
                session, base_url + target.path, target, headers, operation.get("responses", {})
            )
    return failures


async def test_no_query_string_makes_any_get_route_fail_with_a_5xx(
    served: tuple[BaseTestServer, web.Application, list[Target]], sqlite_engine: AsyncEngine
) -> None:
    server, app, targets = served
    assert len(targets) >= 30, [t.pattern for t in targets]
    credentials = await _credentials(app, sqlite_engine)
    base_url = str(server.make_url("")).rstrip("/")
    failures = await asyncio.to_thread(_fuzz, base_url, targets, credentials)
    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures[:40])
