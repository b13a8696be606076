"""The firmware and rollouts pages through a real server over a migrated SQLite store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.rollout_service import RolloutService
from posfleet.dashboard.templating import TEMPLATES_DIR, make_environment
from posfleet.store.accounts import Role, create_user, list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest

SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
EVIL = "<script>alert(1)</script>"
Client = TestClient[web.Request, web.Application]
USERS = {"olga": Role.OPS, "piotr": Role.OPS, "sam": Role.SUPPORT, "victor": Role.VIEWER}


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    for index in range(10):
        await add_terminal(sqlite_engine, f"T-{index:02d}")
    await add_terminal(sqlite_engine, "T-A920", model="A920")
    await add_artifact(sqlite_engine, signed_manifest("5.3.0"))
    return sqlite_engine


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def _text(html: str) -> str:
    """What a reader sees: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


class Staff:
    """Logged-in browsers (cookie jars), one per staff member, made on first use."""

    def __init__(self, engine: AsyncEngine, server: TestServer) -> None:
        self.engine = engine
        self.server = server
        self.clients: dict[str, Client] = {}

    async def __call__(self, name: str) -> Client:
        if name in self.clients:
            return self.clients[name]
        async with self.engine.begin() as conn:
            await create_user(conn, name, PASSWORD, USERS[name])
        client = TestClient(self.server)
        await client.start_server()
        form = await (await client.get("/login")).text()
        data = {"csrf_token": _csrf(form), "username": name, "password": PASSWORD}
        response = await client.post("/login", data=data, allow_redirects=False)
        assert response.status == 303
        self.clients[name] = client
        return client


@pytest.fixture
async def staff(engine: AsyncEngine) -> AsyncIterator[Staff]:
    server = TestServer(create_app(engine, session_secret=SECRET))
    await server.start_server()
    found = Staff(engine, server)
    try:
        yield found
    finally:
        for client in found.clients.values():
            await client.close()
        await server.close()


async def _page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.text()


FORM = {
    "name": "pos-os 5.3.0 " + EVIL,
    "artifact": "1",
    "waves": "20%,100%",
    "success_threshold": "95%",
    "error_threshold": "10%",
    "soak": "30m",
    "offers_per_minute": "60",
    "window": "01:00-04:00",
    "weekdays": "mon-fri",
    "deadline": "72h",
    "max_offline": "7d",
    "reason_code": "security_fix",
    "reason": "CVE-2026-0042",
}


async def _create(client: Client, **fields: str) -> Any:
    token = _csrf(await _page(client, "/firmware/rollouts/new"))
    return await client.post(
        "/firmware/rollouts", data={"csrf_token": token, **FORM, **fields}, allow_redirects=False
    )


async def _act(client: Client, path: str, **fields: str) -> Any:
    token = _csrf(await _page(client, path.rsplit("/", 1)[0]))
    return await client.post(path, data={"csrf_token": token, **fields}, allow_redirects=False)


async def test_firmware_page_lists_artifacts_and_rollouts_with_a_firmware_link(
    staff: Staff, engine: AsyncEngine
) -> None:
    html = await _page(await staff("victor"), "/firmware")
    assert '<a href="/firmware">Firmware</a>' in html
    text = _text(html)
    assert "pos-os@5.3.0" in text and "V400m" in text and "No rollouts yet." in text
    assert "New rollout" not in text  # a viewer cannot create one
    # The other pages carry the same navigation, Firmware included.
    assert '<a href="/firmware">Firmware</a>' in await _page(await staff("victor"), "/")

    service = RolloutService(engine, actor="user:olga", role=Role.OPS)
    created = await service.create(
        {"name": "pilot", "artifact": "pos-os@5.3.0", "reason_code": "feature"}
    )
    fragment = _text(await _page(await staff("victor"), "/fragments/rollouts"))
    assert f"#{created.id} pilot" in fragment and "draft" in fragment
    assert "New rollout" in _text(await _page(await staff("olga"), "/firmware"))


async def test_ops_creates_from_the_form_sees_the_dry_run_and_starts(
    staff: Staff, engine: AsyncEngine
) -> None:
    olga = await staff("olga")
    response = await _create(olga)
    assert response.status == 303
    path = response.headers["Location"]
    assert re.fullmatch(r"/firmware/rollouts/\d+", path)
    html = await _page(olga, path)
    assert EVIL not in html and "&lt;script&gt;" in html  # escaped, not run
    text = _text(html)
    assert "previewed" in text
    assert "Dry run: 10 terminals would be updated" in text
    assert "Wave 1 (20 %): 2 terminals" in text and "Wave 2 (100 %): 8 terminals" in text
    assert "T-A920 not built for its model" in text
    assert "01:00-04:00 in each terminal's own time zone, mon tue wed thu fri" in text
    assert re.search(r">Start</button>", html)

    response = await _act(olga, f"{path}/start", reason_code="security_fix", reason="go")
    assert response.status == 303 and response.headers["Location"] == path
    text = _text(await _page(olga, path))
    assert "running" in text and "Dry run" not in text
    assert "Wave 1: 20 %" in text and "2 not offered yet (of 2)" in text
    assert "start previewed → running by user:olga (security_fix: go)" in text

    live = await _page(olga, f"/fragments/rollouts/{path.rsplit('/', 1)[1]}")
    assert "<html" not in live and re.search(r'formaction="[^"]+/pause"', live)
    assert '<progress value="0" max="2"' in live


async def test_a_bad_field_brings_the_form_back_marked(staff: Staff) -> None:
    response = await _create(await staff("olga"), waves="20%,50%", offers_per_minute="lots")
    assert response.status == 400
    html = await response.text()
    assert 'value="20%,50%"' in html  # what was typed stays
    assert "offers per minute 'lots' must be a whole number" in unescape(html)
    response = await _create(await staff("olga"), waves="20%,50%")
    html = unescape(await response.text())
    assert response.status == 400
    assert 'name="waves" value="20%,50%" aria-invalid="true" aria-describedby' in html
    assert "it must be 100 % so every eligible terminal is updated" in html


async def test_support_staff_may_pause_but_not_start_and_the_refusal_is_audited(
    staff: Staff, engine: AsyncEngine
) -> None:
    path = (await _create(await staff("olga"))).headers["Location"]
    rid = int(path.rsplit("/", 1)[1])
    sam = await staff("sam")
    html = await _page(sam, path)
    assert ">Start</button>" not in html  # not offered to support staff

    refused = await _act(sam, f"{path}/start", reason_code="feature", reason="let me")
    assert refused.status == 403
    assert "start needs the ops role" in _text(await refused.text())
    async with engine.connect() as conn:
        audit = [(e.actor, e.action, e.target) for e in await list_audit(conn)]
    assert ("user:sam", "rollout.start.refused", f"rollout:{rid}") in audit
    assert "previewed" in _text(await _page(sam, path))

    await _act(await staff("olga"), f"{path}/start", reason_code="security_fix")
    assert ">Pause</button>" in await _page(sam, path)
    paused = await _act(sam, f"{path}/pause", reason_code="other", reason="Saturday rush")
    assert paused.status == 303
    text = _text(await _page(sam, path))
    assert "Paused: paused by user:sam: Saturday rush" in text


async def test_a_post_without_the_csrf_token_is_refused(staff: Staff, engine: AsyncEngine) -> None:
    path = (await _create(await staff("olga"))).headers["Location"]
    olga = await staff("olga")
    for target, data in [
        (f"{path}/start", {"reason_code": "security_fix"}),
        (f"{path}/start", {"reason_code": "security_fix", "csrf_token": "forged"}),
        ("/firmware/rollouts", FORM),
    ]:
        response = await olga.post(target, data=data, allow_redirects=False)
        assert response.status == 403, target
        assert "did not come from this site" in await response.text()
    assert "previewed" in _text(await _page(olga, path))
    listed = await RolloutService(engine, actor="t", role=Role.VIEWER).list()
    assert len(listed) == 1  # the forged create made nothing


async def test_viewers_read_but_get_no_forms(staff: Staff) -> None:
    path = (await _create(await staff("olga"))).headers["Location"]
    victor = await staff("victor")
    html = await _page(victor, path)
    assert "Dry run" in html and "<button" not in html.split("</header>", 1)[1]
    refused = await _act(victor, f"{path}/pause", reason_code="other", reason="x")
    assert refused.status == 403
    response = await victor.get("/firmware/rollouts/new")
    assert response.status == 403
    olga = await staff("olga")
    assert (await olga.get("/firmware/rollouts/999")).status == 404
    assert (await olga.get("/firmware/rollouts/abc")).status == 400


async def test_the_second_approver_is_asked_for_on_the_page(staff: Staff) -> None:
    path = (await _create(await staff("olga"), second_approver="on")).headers["Location"]
    html = await _page(await staff("olga"), path)
    assert "Waits for the approval of someone other than user:olga." in _text(html)
    assert ">Start</button>" not in html and ">Approve</button>" not in html
    assert ">Approve</button>" in await _page(await staff("piotr"), path)
    approved = await _act(await staff("piotr"), f"{path}/approve", reason_code="security_fix")
    assert approved.status == 303
    html = await _page(await staff("olga"), path)
    assert "Approved by user:piotr; it may start." in _text(html)
    assert ">Start</button>" in html


def test_every_template_escapes_and_marks_its_text_for_translation() -> None:
    env = make_environment()
    assert env.autoescape is True
    for path in TEMPLATES_DIR.glob("*.html"):
        source = path.read_text(encoding="utf-8")
        env.parse(source)  # every template compiles
        body = re.sub(
            r"{% trans %}.*?{% endtrans %}|{#.*?#}|{%.*?%}|{{.*?}}", "", source, flags=re.DOTALL
        )
        body = body.replace("posfleet", "")  # the product's name is not translated
        visible = [
            line.strip()
            for line in re.sub(r"<[^>]+>", "\n", body).splitlines()
            if re.search(r"[A-Za-z]{3,}", line)
        ]
        assert visible == [], f"{path.name} has text outside _() or trans: {visible[:3]}"
