"""``posfleet demo``, as ``make demo`` runs it: the terminals, the storyline, the banner, the stop.

One demo runs for the module (real broker, central service and simulated fleet, on free
ports with its own var dir), with the storyline played ten times faster through the
documented ``--story-speed`` option. The tests wait for every incident the banner
announces and for their resolution, for the release's rollout to finish wave by wave
(each wave's health gate passed) with the registry showing the new version, and for the
pilot's rollout to pause itself on its boot-looping canary, which rolled back; they run
the banner's incidents, firmware and rollout commands exactly as printed, and the
fixture checks that Ctrl-C stops everything.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.central.demo_firmware import PILOT_VERSION, RELEASE_VERSION
from posfleet.simulator.demo_story import BUSY_TILL, DEMO_STORY, rollout_sites
from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet_file import load_fleet_file
from tests.harness import free_port, require_binary, wait_for

pytestmark = pytest.mark.e2e

HEALTH_INTERVAL_S = 2
STORY_SPEED = 10
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


@dataclass
class RunningDemo:
    """A ``posfleet demo`` child process and what it wrote."""

    process: subprocess.Popen[bytes]
    port: int
    var_dir: Path
    output_file: Path
    token: str = ""

    def output(self) -> str:
        """Everything the demo printed so far."""
        return self.output_file.read_text(errors="replace")

    def get(self, path: str) -> Any:
        """A JSON answer of the demo's API, with its admin token."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def page(self, path: str) -> str:
        """A dashboard page as its text, logged in with the demo's admin login."""
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        base = f"http://127.0.0.1:{self.port}"
        with opener.open(f"{base}/login", timeout=5) as response:
            form = response.read().decode()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None, form
        username, password = (self.var_dir / "admin-login").read_text().split()
        fields = {"csrf_token": csrf.group(1), "next": path}
        fields |= {"username": username, "password": password}
        body = urllib.parse.urlencode(fields).encode()
        with opener.open(f"{base}/login", body, timeout=5) as response:
            assert response.geturl() == base + path, response.geturl()
            html = response.read().decode()
        return " ".join(re.sub(r"<[^>]+>", " ", html).split())

    def incidents(self) -> list[dict[str, Any]]:
        """Every incident, newest first ([] while the service does not answer)."""
        return self.items("/api/v1/incidents?limit=500")

    def items(self, path: str) -> list[dict[str, Any]]:
        """The ``items`` of a list answer ([] while the service does not answer)."""
        try:
            items: list[dict[str, Any]] = self.get(path)["items"]
        except (urllib.error.URLError, ConnectionError):
            return []
        return items

    def run_as_printed(self, pattern: str) -> subprocess.CompletedProcess[str]:
        """Run the banner's command matching ``pattern`` in a newcomer's shell."""
        printed = re.search(rf"^\s+(POSFLEET_VAR_DIR=\S+ .*{pattern})\s*$", self.output(), re.M)
        assert printed is not None, self.output()
        # As a newcomer's shell has it: no virtualenv on the PATH, no posfleet settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_")}
        env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        env.pop("VIRTUAL_ENV", None)
        result = subprocess.run(
            printed.group(1),
            shell=True,
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    require_binary("mosquitto", "mosquitto")
    tmp = tmp_path_factory.mktemp("demo")
    var_dir, output_file, port = tmp / "var-demo", tmp / "demo-output.txt", free_port()
    with output_file.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "posfleet.central.cli", "demo",
                "--port", str(port),
                "--var-dir", str(var_dir),
                "--health-interval", str(HEALTH_INTERVAL_S),
                "--story-speed", str(STORY_SPEED),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )  # fmt: skip
    running = RunningDemo(process, port, var_dir, output_file)
    try:
        token_file = var_dir / "api-token"
        wait_for(token_file.exists, timeout=30, description="the demo's API token file")
        running.token = token_file.read_text().strip()
        yield running
    finally:
        # What Ctrl-C in a terminal does: SIGINT to the whole foreground process group.
        os.killpg(running.process.pid, signal.SIGINT)
        running.process.wait(timeout=60)
    text = running.output()
    assert running.process.returncode == 0, text
    assert f"http://127.0.0.1:{running.port}" in text
    assert "posfleet demo stopped" in text
    assert _processes_mentioning(str(var_dir)) == [], "the demo left processes behind"


def test_demo_brings_up_twenty_fresh_terminals(demo: RunningDemo) -> None:
    def fresh_online() -> list[dict[str, Any]]:
        try:
            items: list[dict[str, Any]] = demo.get("/api/v1/terminals?limit=500")["items"]
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
    assert _processes_mentioning(str(demo.var_dir)), "broker and fleet run with the demo's paths"


def _story_terminals(demo: RunningDemo, fault: FaultName) -> list[str]:
    fleet = load_fleet_file(demo.var_dir / "fleet.json").terminals
    step = next(s for s in DEMO_STORY if s.fault is fault and s.action == "inject")
    return step.select(fleet)


def _one(items: list[dict[str, Any]], rule_id: str, terminal_id: str) -> dict[str, Any] | None:
    found = [i for i in items if i["rule_id"] == rule_id and i["terminal_id"] == terminal_id]
    return found[0] if found else None


def test_the_storyline_shows_every_announced_incident_and_their_resolution(
    demo: RunningDemo,
) -> None:
    [paper_terminal] = _story_terminals(demo, FaultName.PAPER_OUT)
    [reader_terminal] = _story_terminals(demo, FaultName.READER_ERRORS)
    assert [reader_terminal] == BUSY_TILL(load_fleet_file(demo.var_dir / "fleet.json").terminals)
    site_terminals = sorted(_story_terminals(demo, FaultName.HOST_DOWN))
    assert len(site_terminals) == 4

    def host_fleet_incidents() -> list[dict[str, Any]]:
        return [
            i
            for i in demo.incidents()
            if i["kind"] == "fleet" and i["rule_id"] == "network.host_unreachable"
        ]

    def site_outage_grouped() -> dict[str, Any] | None:
        found = host_fleet_incidents()
        if not found:
            return None
        detail: dict[str, Any] = demo.get(f"/api/v1/incidents/{found[0]['id']}")
        children = sorted(c["terminal_id"] for c in detail["children"])
        return detail if children == site_terminals else None

    outage = wait_for(
        site_outage_grouped,
        timeout=60,
        interval=0.5,
        description=f"one fleet incident for the host outage at {', '.join(site_terminals)}",
    )
    assert outage is not None
    # The site's terminals share one site and one merchant: the fleet incident says so, and
    # tells the merchant to look at the router, not at each terminal.
    fleet_file = load_fleet_file(demo.var_dir / "fleet.json").terminals
    shared = {(t.site_id, t.merchant_id) for t in fleet_file if t.terminal_id in site_terminals}
    [(site_id, merchant_id)] = shared
    record = outage["incident"]
    assert (record["site_id"], record["merchant_id"]) == (site_id, merchant_id), record
    assert "check the router or modem on site" in " ".join(record["remedy"]), record
    wait_for(
        lambda: _one(demo.incidents(), "printer.not_ready", paper_terminal),
        timeout=30,
        interval=0.5,
        description=f"the paper-out incident on {paper_terminal}",
    )
    reader = wait_for(
        lambda: _one(demo.incidents(), "card_reader.errors", reader_terminal),
        timeout=60,
        interval=0.5,
        description=f"the failing card reader incident on {reader_terminal}",
    )
    assert reader is not None
    # It fired for the reason a real terminal's does: its reads fail, not a bare event.
    increase = reader["facts"]["increase"]
    assert increase["reads"] >= 10 and increase["errors"] >= 5, reader
    assert increase["errors"] / increase["reads"] > 0.05, reader
    assert reader["title"] == "Card reads failing"

    def resolved() -> list[dict[str, Any]]:
        items = demo.incidents()
        paper = _one(items, "printer.not_ready", paper_terminal)
        fleet = [i for i in items if i["id"] == outage["incident"]["id"]]
        done = [i for i in [paper, *fleet] if i is not None and i["state"] == "resolved"]
        return items if len(done) == 2 else []

    items = wait_for(
        resolved,
        timeout=60,
        interval=0.5,
        description="the paper-out and host-outage incidents resolve once paper and host are back",
    )
    assert len(host_fleet_incidents()) == 1, "the site's outage is one fleet incident"
    host_children = [
        i
        for i in items
        if i["rule_id"] == "network.host_unreachable" and i["terminal_id"] in site_terminals
    ]
    assert {i["terminal_id"] for i in host_children} == set(site_terminals)
    assert all(i["parent_id"] == outage["incident"]["id"] for i in host_children)
    assert all(i["state"] == "resolved" for i in host_children)
    # Nobody repairs the reader in the story: its incident stays open.
    still = _one(items, "card_reader.errors", reader_terminal)
    assert still is not None and still["state"] != "resolved"


def test_the_banner_incidents_command_runs_as_printed(demo: RunningDemo) -> None:
    [reader_terminal] = _story_terminals(demo, FaultName.READER_ERRORS)
    wait_for(
        lambda: _one(demo.incidents(), "card_reader.errors", reader_terminal),
        timeout=60,
        interval=0.5,
        description=f"the failing card reader incident on {reader_terminal}",
    )
    result = demo.run_as_printed("incidents list")
    lines = [line for line in result.stdout.splitlines() if reader_terminal in line]
    assert lines and "Card reads failing" in lines[0], result.stdout


FINAL = {"succeeded", "failed", "rejected", "rolled_back", "timed_out", "cancelled"}


def _announced(banner: str, pattern: str) -> int:
    """The id of the rollout the banner announces with ``pattern`` (a regex with an id)."""
    found = re.search(pattern, banner)
    assert found is not None, banner
    return int(found.group(1))


def test_the_release_rolls_out_in_waves_and_the_pilot_pauses_on_its_boot_looping_canary(
    demo: RunningDemo,
) -> None:
    fleet = load_fleet_file(demo.var_dir / "fleet.json")
    release_site, pilot_site = rollout_sites(fleet.terminals)
    release = [t.terminal_id for t in fleet.terminals if t.site_id == release_site]
    pilot = [t.terminal_id for t in fleet.terminals if t.site_id == pilot_site]
    assert len(release) == 4 and len(pilot) == 4
    wait_for(lambda: "Press Ctrl-C to stop." in demo.output(), timeout=30, description="banner")
    banner = " ".join(demo.output().split())
    release_id = _announced(
        banner, rf"starts rollout #(\d+): pos-os {RELEASE_VERSION} to the 4 terminals at vienna-1"
    )
    pilot_id = _announced(banner, r"Rollout #(\d+) pilots a release candidate at berlin-mitte")
    assert f"the Firmware page, http://127.0.0.1:{demo.port}/firmware," in banner
    # The release key stays in the demo's folder, for its owner only; both sides trust it.
    key_folder = demo.var_dir / "firmware"
    assert (key_folder / "release.key").stat().st_mode & 0o777 == 0o600
    trusted = [p.resolve() for p in fleet.firmware_trusted_keys.values()]
    assert trusted == [(key_folder / "release.pub").resolve()]

    def rollout(rollout_id: int, state: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = demo.get(f"/api/v1/rollouts/{rollout_id}")
        except (urllib.error.URLError, ConnectionError):
            return None
        return found if found["state"] == state else None

    done = wait_for(
        lambda: rollout(release_id, "finished"),
        timeout=120,
        interval=0.5,
        description=f"rollout #{release_id} to finish",
    )
    assert done is not None
    waves = done["waves"]
    assert [w["planned"] for w in waves] == [1, 1, 2]
    assert [w["state"] for w in waves] == ["passed"] * 3
    for wave in waves:  # each gate judged updated terminals against their own baseline
        assert wave["gate"]["passed"] is True, wave
        assert wave["gate"]["after"]["terminals"] >= 1, wave
        assert wave["gate"]["before"]["terminals"] == wave["gate"]["after"]["terminals"], wave
    assert done["totals"]["succeeded"] == 4
    history = [(t["command"], t["actor"]) for t in done["transitions"]]
    admin = f"user:{(demo.var_dir / 'admin-login').read_text().split()[0]}"
    assert history[:3] == [("create", admin), ("preview", admin), ("start", admin)]
    assert history[3][0] == "finish" and history[3][1].startswith("system:rollout-runner/")
    assert done["transitions"][0]["reason_code"] == "bug_fix"

    paused = wait_for(
        lambda: rollout(pilot_id, "paused"),
        timeout=60,
        interval=0.5,
        description=f"pilot rollout #{pilot_id} to pause itself",
    )
    assert paused is not None
    canary, rest = paused["waves"]
    assert canary["state"] == "failed" and canary["counts"]["failed"] == 1
    assert rest["counts"]["not_offered"] == 3, "the other terminals were never offered it"
    assert paused["transitions"][-1]["actor"].startswith("system:rollout-runner/")
    assert "error threshold" in paused["paused_reason"]

    def ended() -> dict[str, dict[str, Any]] | None:
        found = {a["terminal_id"]: a for a in demo.items("/api/v1/firmware/actions")}
        if len(found) == 5 and all(a["state"] in FINAL for a in found.values()):
            return found
        return None

    actions = wait_for(ended, timeout=30, interval=0.5, description="the Actions to end")
    assert actions is not None
    for terminal_id in release:
        action = actions[terminal_id]
        assert (action["artifact_version"], action["state"]) == (RELEASE_VERSION, "succeeded")
        assert action["progress"] == 1.0, action
    [rolled] = [actions[t] for t in pilot if t in actions]
    assert (rolled["artifact_version"], rolled["state"]) == (PILOT_VERSION, "rolled_back")
    assert "failed to boot" in rolled["detail"], rolled

    def registry_shows_the_new_version() -> bool:
        versions = {
            t["terminal_id"]: t["firmware_version"]
            for t in demo.items("/api/v1/terminals?limit=500")
        }
        return all(versions.get(t) == RELEASE_VERSION for t in release) and all(
            versions.get(t) == "2.4.1" for t in pilot
        )

    wait_for(
        registry_shows_the_new_version,
        timeout=30,
        interval=0.5,
        description=f"the registry to show {RELEASE_VERSION} on {', '.join(release)}",
    )

    result = demo.run_as_printed("firmware actions")
    rows = {t: [ln for ln in result.stdout.splitlines() if t in ln] for t in [*release, *pilot]}
    for terminal_id in release:
        assert rows[terminal_id] and "succeeded" in rows[terminal_id][0], result.stdout
        assert f"pos-os@{RELEASE_VERSION}" in rows[terminal_id][0]
    assert rows[rolled["terminal_id"]] and "rolled_back" in rows[rolled["terminal_id"]][0]
    assert "5 action(s), 0 open" in result.stdout

    # The Firmware page lists both; the rollout's page shows each wave and its gate.
    listed = demo.page("/firmware")
    assert f"#{release_id} pos-os 5.3.0 vienna-1 pos-os@5.3.0 finished" in listed, listed
    assert f"#{pilot_id} pos-os 5.4.0-rc.1 pilot berlin-mitte" in listed, listed
    shown = demo.page(f"/firmware/rollouts/{release_id}")
    for n, size in ((1, "1 terminal"), (2, "50 %"), (3, "100 %")):
        assert f"Wave {n}: {size} passed" in shown, shown
    assert shown.count("Health gate: passed") == 3, shown

    # The banner's rollout command, as printed: the rollout wave by wave, then it ends.
    watched = demo.run_as_printed(rf"rollout watch {release_id}")
    text = " ".join(watched.stdout.split())
    assert f"rollout #{release_id} 'pos-os 5.3.0 vienna-1': pos-os@5.3.0 finished" in text
    assert "4/4 updated, 0 failed" in text
    wave_rows = [ln for ln in watched.stdout.splitlines() if re.match(r"[123] ", ln)]
    assert len(wave_rows) == 3 and all(" passed " in ln for ln in wave_rows), watched.stdout
    assert all("reader errors" in ln for ln in wave_rows), "each wave shows its gate figures"
