"""``posfleet rollout ...`` from the shell: on this installation's SQLite store, and with
``--server`` through a real dashboard (in a thread of its own, as the CLI runs its own
event loop), where the token's role decides."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from posfleet.central.cli import main
from posfleet.dashboard import create_app
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.accounts import Role, create_api_token, list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest

CREATE = (
    "rollout", "create", "pilot", "--artifact", "pos-os@5.3.0", "--models", "V400m",
    "--waves", "25%,100%", "--soak", "10m", "--second-approver",
    "--reason-code", "security_fix", "--reason", "CVE-2026-0042",
)  # fmt: skip


async def _installation(database: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await upgrade_engine(engine)
        for index in range(8):
            await add_terminal(engine, f"T-CLI-{index}")
        await add_artifact(engine, signed_manifest("5.3.0"))
        await add_artifact(engine, signed_manifest("5.2.0", allow_downgrade=True))
    finally:
        await engine.dispose()


@dataclass
class Installation:
    var: Path

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.var / 'posfleet.db'}"


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Installation:
    var = tmp_path / "var"
    var.mkdir()
    asyncio.run(_installation(var / "posfleet.db"))
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(var))
    monkeypatch.delenv("POSFLEET_API_TOKEN", raising=False)
    return Installation(var)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _audit(installation: Installation) -> list[tuple[str, str]]:
    async def read() -> list[tuple[str, str]]:
        engine = create_engine(installation.url)
        try:
            async with engine.connect() as conn:
                return [(e.actor, e.action) for e in await list_audit(conn, limit=100)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_create_preview_and_steer_on_this_installation(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, *CREATE)
    assert code == 0, err
    assert "rollout #1 'pilot' created (draft): pos-os@5.3.0 to models V400m" in out
    assert "waves: 25 %, 100 %" in out

    code, out, _ = _run(capsys, "rollout", "preview", "1", "--limit", "1")
    assert code == 0
    assert "8 terminal(s) in 2 wave(s), 0 excluded" in out
    assert "wave 1 (25 %): 2 terminal(s)" in out and "... and 1 more" in out
    assert "next: someone other than cli:" in out  # the second approver

    # The creator cannot approve nor start it: one line each, exit 1, and audited.
    for verb in ("approve", "start"):
        code, out, err = _run(capsys, "rollout", verb, "1", "--reason-code", "security_fix")
        assert code == 1 and out == "", out
        assert err.startswith("posfleet: error: ") and err.count("\n") == 1, err
    assert (
        "cannot approve" in _run(capsys, "rollout", "approve", "1", "--reason-code", "feature")[2]
    )
    refused = {action for _, action in _audit(installation)}
    assert {"rollout.approve.refused", "rollout.start.refused"} <= refused

    code, out, _ = _run(capsys, "rollout", "show", "1", "--json")
    shown = json.loads(out)
    assert shown["state"] == "previewed" and shown["policy"]["require_second_approver"]
    assert [w["soak_s"] for w in shown["policy"]["waves"]] == [600.0, 600.0]

    code, out, _ = _run(capsys, "rollout", "abort", "1", "--reason-code", "feature")
    assert code == 0 and "aborted: now aborted" in out
    code, out, _ = _run(capsys, "rollout", "list", "--state", "aborted")
    assert "#1" in out and "pilot" in out and "aborted" in out
    code, out, _ = _run(capsys, "rollout", "watch", "1")
    assert code == 0 and "aborted" in out  # nothing under way: one picture, then done


def test_the_rollback_artifact_is_named_at_creation_or_when_rolling_back(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, *CREATE, "--rollback-to", "pos-os@5.3.0")
    assert code == 1 and "the rollback artifact is the artifact rolled out" in err, err
    code, _, err = _run(capsys, *CREATE, "--rollback-to", "pos-os@5.2.0")
    assert code == 0, err
    code, out, _ = _run(capsys, "rollout", "show", "1", "--json")
    assert json.loads(out)["rollback_artifact"] == "pos-os@5.2.0"
    code, out, _ = _run(capsys, "rollout", "show", "1")
    assert "rollback to: pos-os@5.2.0" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("rollout", "show", "99"), "no rollout #99"),
        (("rollout", "pause", "99", "--reason-code", "other"), "reason code 'other' needs"),
        ((*CREATE[:7], "--waves", "10%,50%", "--reason-code", "feature"), "it must be 100 %"),
        ((*CREATE[:7], "--waves", "ten", "--reason-code", "feature"), "wave 'ten' must be"),
        ((*CREATE[:3], "--artifact", "pos-os@9.9.9", "--reason-code", "feature"), "no artifact"),
        (("rollout", "list", "--state", "sleeping"), "state is one of draft"),
        (("rollout", "show", "1", "--server", "http://127.0.0.1:9"), "set POSFLEET_API_TOKEN"),
    ],
)
def test_mistakes_are_one_line_each(
    installation: Installation,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    says: str,
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 1, (out, err)
    assert err.startswith("posfleet: error: ") and says in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err


class _Dashboard:
    """The dashboard on a free port, served from a thread with its own event loop."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = create_engine(database_url)
        self.runner = web.AppRunner(create_app(self.engine, session_secret=bytes(range(32))))
        self.call(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.call(site.start())
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def token(self, role: Role) -> str:
        async def make() -> str:
            async with self.engine.begin() as conn:
                return await create_api_token(conn, f"cli-{role}", role)

        return str(self.call(make()))

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.call(self.engine.dispose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def dashboard(installation: Installation) -> Iterator[_Dashboard]:
    served = _Dashboard(installation.url)
    try:
        yield served
    finally:
        served.close()


def test_through_the_api_the_token_role_decides(
    dashboard: _Dashboard,
    installation: Installation,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ("--server", dashboard.url)
    monkeypatch.setenv("POSFLEET_API_TOKEN", dashboard.token(Role.SUPPORT))
    code, _, err = _run(capsys, *CREATE, *server)
    assert code == 1 and "the server refused (403): create needs the ops role" in err, err

    monkeypatch.setenv("POSFLEET_API_TOKEN", dashboard.token(Role.OPS))
    code, out, err = _run(capsys, *CREATE, *server)
    assert code == 0, err
    assert "rollout #1 'pilot' created (draft)" in out
    code, out, _ = _run(capsys, "rollout", "preview", "1", *server)
    assert code == 0 and "8 terminal(s) in 2 wave(s)" in out
    code, _, err = _run(capsys, "rollout", "start", "1", "--reason-code", "feature", *server)
    assert code == 1 and "(403)" in err and "second approver" in err, err
    code, out, _ = _run(capsys, "rollout", "show", "1", "--json", *server)
    assert json.loads(out)["transitions"][-1]["command"] == "preview"
    assert ("token:cli-ops", "rollout.start.refused") in _audit(installation)
    assert ("token:cli-support", "rollout.create.refused") in _audit(installation)
