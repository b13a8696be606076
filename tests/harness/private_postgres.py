"""A private PostgreSQL cluster for the test session: initdb + postgres on a free port.

The tests never rely on a PostgreSQL service somebody else started: they create a
throw-away cluster with the Debian package's binaries, listening on 127.0.0.1 only, with
durability switched off (it is deleted afterwards), and stop it at the end.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from posfleet.central.mosquitto import free_port

PG_USER = "postgres"


def find_postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<v>/bin``; fails the test naming the package if absent."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql", pytrace=False)
    return candidates[-1].parent


class PrivatePostgres:
    """One PostgreSQL server owned by the test session."""

    def __init__(self) -> None:
        self.bindir = find_postgres_bindir()
        self.port = free_port()
        self.host = "127.0.0.1"
        self._root = Path(tempfile.mkdtemp(prefix="posfleet-pg-"))
        self._process: subprocess.Popen[bytes] | None = None
        # initdb refuses to run as root; as root, run the server as the postgres user.
        self._run_as = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self._root / "postgres.log"

    def start(self, timeout: float = 30.0) -> None:
        """initdb a new cluster and start the server; wait until it accepts connections."""
        data = self._root / "data"
        if self._run_as:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self._root, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [*self._run_as, str(self.bindir / "initdb"), "-D", str(data), "-U", PG_USER,
             "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [*self._run_as, str(self.bindir / "postgres"), "-D", str(data),
             "-p", str(self.port), "-k", str(self._root), "-c", f"listen_addresses={self.host}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up; see {self.log_path}")
            try:
                asyncio.run(self._execute("postgres", "SELECT 1"))
                return
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start; see {self.log_path}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown, then remove the cluster."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGINT)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        shutil.rmtree(self._root, ignore_errors=True)

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{PG_USER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database with a unique name; return its SQLAlchemy URL."""
        name = f"posfleet_{uuid.uuid4().hex[:12]}"
        asyncio.run(self._execute("postgres", f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`."""
        name = url.rsplit("/", 1)[1]
        asyncio.run(self._execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _execute(self, database: str, statement: str) -> None:
        conn = await asyncpg.connect(
            host=self.host, port=self.port, user=PG_USER, database=database, timeout=5
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()
