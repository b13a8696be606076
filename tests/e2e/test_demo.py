"""``posfleet demo``, as ``make demo`` runs it: twenty terminals online, and a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import free_port, require_binary, wait_for

pytestmark = pytest.mark.e2e

HEALTH_INTERVAL_S = 3


def _processes_mentioning(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if marker in cmdline and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


def _get_terminals(port: int, token: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/terminals?limit=500",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        items: list[dict[str, Any]] = json.load(response)["items"]
        return items


def test_demo_brings_up_twenty_fresh_terminals_and_stops_everything(tmp_path: Path) -> None:
    require_binary("mosquitto", "mosquitto")
    var_dir = tmp_path / "demo"
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable, "-m", "posfleet.central.cli", "demo",
            "--port", str(port),
            "--var-dir", str(var_dir),
            "--health-interval", str(HEALTH_INTERVAL_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        token_file = var_dir / "api-token"
        wait_for(token_file.exists, timeout=30, description="the demo's API token file")
        token = token_file.read_text().strip()

        def fresh_online() -> list[dict[str, Any]]:
            try:
                items = _get_terminals(port, token)
            except (urllib.error.URLError, ConnectionError):
                return []
            now = datetime.now(UTC)
            fresh = [
                t
                for t in items
                if t["online"]
                and t["health_at"]
                and now - datetime.fromisoformat(t["health_at"])
                < timedelta(seconds=2 * HEALTH_INTERVAL_S)
            ]
            return fresh if len(fresh) >= 20 else []

        fresh = wait_for(fresh_online, timeout=60, interval=0.5, description="20 fresh terminals")
        assert len({t["terminal_id"] for t in fresh}) >= 20
        assert all(t["health"]["network"]["type"] for t in fresh)
        assert _processes_mentioning(str(var_dir)), "broker and fleet run with the demo's paths"
    finally:
        # What Ctrl-C in a terminal does: SIGINT to the whole foreground process group.
        os.killpg(demo.pid, signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert demo.returncode == 0, text
    assert f"http://127.0.0.1:{port}" in text
    assert "posfleet demo stopped" in text
    assert _processes_mentioning(str(var_dir)) == [], "the demo left processes behind"
