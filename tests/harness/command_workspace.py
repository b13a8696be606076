"""A fresh workspace per documented command: var dir, working directory, file system root.

:class:`Workspace` runs a command as the installed console script would be run by hand,
with ``POSFLEET_VAR_DIR`` pointing at a new var dir, and moves the absolute paths the
documentation uses (``/etc/posfleet/agent.toml``) under its own root.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.dashboard import create_app
from posfleet.store import create_engine, default_database_url
from tests.harness.binaries import require_binary
from tests.harness.doc_commands import DocumentedCommand
from tests.harness.mqtt_probe import MqttProbe

BIN = Path(sys.executable).parent
"""Where the console scripts ``posfleet`` and ``posfleet-agent`` are installed."""

DashboardClient = TestClient[web.Request, web.Application]


class Workspace:
    """A fresh var dir, working directory and file system root for one command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.var_dir = root / "var"
        self.fs = root / "fs"
        for folder in (self.work, self.fs):
            folder.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_")}
        self.env["POSFLEET_VAR_DIR"] = str(self.var_dir)
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', os.defpath)}"
        self.substitutions: dict[str, str] = {}
        self._daemons: list[tuple[asyncio.subprocess.Process, Path]] = []
        self._brokers: list[MosquittoBroker] = []
        self._probes: list[MqttProbe] = []

    def local(self, documented: str | Path) -> Path:
        """Where a documented path is in this workspace (``/etc/x`` -> ``fs/etc/x``)."""
        text = str(documented)
        return self.fs / text.lstrip("/") if text.startswith("/") else self.work / text

    def _word(self, word: str) -> str:
        word = self.substitutions.get(word, word)
        return str(self.local(word)) if word.startswith("/") else word

    def argv(self, command: DocumentedCommand) -> list[str]:
        """The command line to run: the installed console script, paths moved."""
        program = BIN / command.program
        assert program.exists(), f"{program} is not installed: pip install -e '.[dev]'"
        return [str(program), *(self._word(w) for w in command.argv[1:])]

    def _env(self, command: DocumentedCommand, extra: dict[str, str] | None) -> dict[str, str]:
        documented = {k: self._word(v) for k, v in command.env.items()}
        return {**self.env, **documented, **(extra or {})}

    async def run(
        self, command: DocumentedCommand, *, env: dict[str, str] | None = None, limit_s: float = 120
    ) -> str:
        """Run ``command`` to its end; fail unless it exits 0 without a traceback."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(command),
            cwd=self.work,
            env=self._env(command, env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), limit_s)
        stdout = out.decode(errors="replace")
        assert_clean(command, process.returncode, stdout + err.decode(errors="replace"))
        if command.stdout_to is not None:
            target = self.local(command.stdout_to)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stdout, encoding="utf-8")
        return stdout

    async def start(
        self, command: DocumentedCommand, *, env: dict[str, str] | None = None
    ) -> Callable[[], Awaitable[str]]:
        """Start a daemon; the returned function stops it with SIGTERM and checks its end."""
        log_path = self.root / f"daemon-{len(self._daemons) + 1}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *self.argv(command),
                cwd=self.work,
                env=self._env(command, env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self._daemons.append((process, log_path))

        async def stop() -> str:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
            output = log_path.read_text(errors="replace")
            assert_clean(command, code, output)
            return output

        return stop

    def start_broker(self, auth: BrokerAuthStore) -> MosquittoBroker:
        """A real Mosquitto on a free port, authenticating against ``auth``'s files."""
        require_binary("mosquitto", "mosquitto")
        broker = MosquittoBroker(self.root / "mosquitto", auth_dir=auth.directory)
        broker.start()
        self._brokers.append(broker)
        return broker

    def probe(self, broker: MosquittoBroker, credentials: BrokerCredentials) -> MqttProbe:
        """An MQTT client of the test on ``broker`` (the centre's listener for a service
        user); closed with the workspace."""
        services = BrokerAuthStore(broker.auth_dir).service_users()
        if credentials.username in services:
            probe = MqttProbe(broker.central_host, broker.central_port, credentials)
        else:
            probe = MqttProbe(broker.host, broker.port, credentials)
        self._probes.append(probe)
        return probe

    @asynccontextmanager
    async def engine(self) -> AsyncIterator[AsyncEngine]:
        """An engine on the var dir's database (the commands' default)."""
        engine = create_engine(default_database_url(self.var_dir))
        try:
            yield engine
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def dashboard(
        self,
    ) -> AsyncIterator[DashboardClient]:
        """The real dashboard over the var dir's database, on a real HTTP server."""
        async with self.engine() as engine:
            app = create_app(engine, session_secret=os.urandom(32))
            async with TestClient(TestServer(app)) as client:
                yield client

    def close(self) -> None:
        """Stop whatever a failed test left running, and show what the daemons logged
        (pytest prints a test's captured output when it fails)."""
        for process, log_path in self._daemons:
            if process.returncode is None:
                process.kill()
            print(f"--- {log_path.name} ---\n{log_path.read_text(errors='replace')}")
        for probe in self._probes:
            probe.close()
        for broker in self._brokers:
            broker.stop()


def assert_clean(command: DocumentedCommand, code: int | None, output: str) -> None:
    """Fail unless the command exited 0 and printed no traceback."""
    where = f"{command.text!r} ({command.source})"
    assert code == 0, f"{where} exited with {code}:\n{output}"
    assert "Traceback" not in output, f"{where} printed a traceback:\n{output}"
