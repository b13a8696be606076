"""What one agent costs on a terminal: resident memory and CPU seconds per report.

Starts a private mosquitto, serves a simulated terminal on a pty, runs the real
``posfleet-agent run`` process against both with a short health interval, and measures
that process from /proc once the first reports are out (start-up excluded) until a
fixed number of reports more have arrived at a subscriber. The agent writes the modules it
had loaded when it stopped (``sys.modules``, through a ``runpy`` wrapper that adds
nothing else), so what follows is about what the running agent really imported: whether
pydantic or cryptography were among them, a bare Python interpreter that imports exactly
those modules and idles (the floor under the agent, so its own share is visible), and what
each group of them adds to a bare interpreter's resident memory, in the order the agent
imports them. Goal: RSS <= 30 MB.

Every one of these processes runs posfleet as a terminal has it after ``pip install``:
from a private copy of the package, byte-compiled beforehand. (Run from this work tree
with ``PYTHONDONTWRITEBYTECODE`` set, every start would compile the agent's sources
afresh, and the compiler's passing peak stays in the process as megabytes of heap that
no installed agent pays.)

Usage: python -m bench.agent_footprint [--reports 60] [--interval 1]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import posfleet
from bench.fleet_load import cpu_s, rss_mb
from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal

GOAL_RSS_MB = 30.0
WARM_UP_REPORTS = 5
TERMINAL_ID = "FOOT-1"


class Reports:
    """Counts one terminal's health reports at the broker."""

    def __init__(self, broker: MosquittoBroker, creds: BrokerCredentials) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(creds.username, creds.password)
        self._client.on_message = self._on_message
        self._client.connect(broker.central_host, broker.central_port)
        self._client.subscribe(f"pos/v1/{TERMINAL_ID}/health", qos=1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def _wait_reports(reports: Reports, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while reports.count < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {reports.count} of {n} reports arrived in {limit_s:g} s")
        await asyncio.sleep(0.05)


IMPORT_STEPS = (
    "asyncio",
    "sqlite3",
    "serial",
    "paho.mqtt.client",
    "pydantic",
    "cryptography",
    "posfleet.contract",
    "posfleet.agent.settings",
    "posfleet.agent.wire",
    "posfleet.agent.uplink",
    "posfleet.agent.outbox",
    "posfleet.agent.drivers.maintenance",
    "posfleet.agent.drivers.zvt",
    "posfleet.agent.firmware_standby",
    "posfleet.agent.firmware_updater",
    "posfleet.agent.commands",
    "posfleet.agent.daemon",
    "posfleet.agent.runner",
    "posfleet.agent.cli",
)
"""Groups of imports, heaviest libraries first; only those the running agent had loaded are
measured, each step's RSS is what it adds, and ``other modules`` is the rest it loaded."""

HEAVY_LIBRARIES = ("pydantic", "pydantic_core", "pydantic_settings", "cryptography")
"""Libraries the idle agent should not load: the bench says whether it did."""

_AGENT_WRAPPER = """
import atexit, json, os, runpy, sys
def _dump():
    with open(os.environ["FOOTPRINT_MODULES_FILE"], "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(_dump)
sys.argv = ["posfleet-agent", *sys.argv[1:]]
runpy.run_module("posfleet.agent.cli", run_name="__main__", alter_sys=True)
"""

_STEPS_SCRIPT = """
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
steps_and_rest = json.loads(sys.stdin.read())
steps = {"interpreter": rss()}
for name in steps_and_rest["steps"]:
    before = rss()
    importlib.import_module(name)
    steps[name] = rss() - before
before = rss()
for name in steps_and_rest["rest"]:
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
steps["other modules"] = rss() - before
print(json.dumps(steps))
"""


def installed_copy(work: Path) -> Path:
    """A folder holding posfleet as ``pip install`` leaves it: the package, byte-compiled."""
    root = work / "site"
    shutil.copytree(
        Path(posfleet.__file__).parent,
        root / "posfleet",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    if not compileall.compile_dir(root / "posfleet", quiet=1):
        raise SystemExit("cannot byte-compile the copy of posfleet")
    return root


def _env(site: Path) -> dict[str, str]:
    """The environment of a process that imports posfleet from ``site`` (before this tree)."""
    return {**os.environ, "PYTHONPATH": str(site)}


def import_breakdown(loaded: list[str], site: Path) -> dict[str, float]:
    """MB of resident memory each step of :data:`IMPORT_STEPS` the agent had loaded adds,
    then everything else in ``loaded``, in a fresh interpreter."""
    steps = [name for name in IMPORT_STEPS if name in loaded]
    request = json.dumps({"steps": steps, "rest": loaded})
    out = subprocess.run(
        [sys.executable, "-c", _STEPS_SCRIPT], input=request, cwd=site, env=_env(site),
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return {name: round(mb, 1) for name, mb in json.loads(out).items()}


def _importable(loaded: list[str]) -> list[str]:
    """The modules of ``loaded`` a plain ``import`` can bring in (no ``__main__``, no C
    modules that only exist as part of another)."""
    return [n for n in loaded if n not in ("__main__", "__mp_main__") and not n.startswith("_")]


def _baseline(hold_s: float, loaded: list[str], site: Path) -> dict[str, float]:
    """A Python that imports what the agent had loaded and idles: the floor under the agent."""
    code = (
        "import importlib, sys, time\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
        f"time.sleep({hold_s})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *_importable(loaded)], cwd=site, env=_env(site)
    )
    time.sleep(min(hold_s - 0.5, 3.0))
    result = {"rss_mb": rss_mb(proc.pid), "cpu_s": cpu_s(proc.pid)}
    proc.wait()
    return result


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    site = installed_copy(work)
    auth = BrokerAuthStore(work / "auth")
    central = auth.add_service_user("central")
    creds = auth.add_terminal(TERMINAL_ID)
    with MosquittoBroker(work / "broker", auth_dir=auth.directory) as broker:
        reports = Reports(broker, central)
        terminal = SimulatedTerminal("SN-FOOT", seed=1)
        async with serve_pty(terminal) as port:
            env = _env(site)
            env.update(
                POSFLEET_AGENT_TERMINAL_ID=TERMINAL_ID,
                POSFLEET_AGENT_PASSWORD=creds.password,
                POSFLEET_AGENT_BROKER_URL=broker.url,
                POSFLEET_AGENT_SERIAL_URL=port,
                POSFLEET_AGENT_HEALTH_INTERVAL_S=str(args.interval),
                POSFLEET_AGENT_FAULT_POLL_S=str(args.interval),
                POSFLEET_AGENT_STATE_DIR=str(work / "agent"),
            )
            modules_file = work / "agent-modules.json"
            env["FOOTPRINT_MODULES_FILE"] = str(modules_file)
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _AGENT_WRAPPER, "run", env=env, cwd=site
            )
            try:
                await _wait_reports(reports, WARM_UP_REPORTS, 60)
                cpu0, n0, t0 = cpu_s(agent.pid), reports.count, time.monotonic()
                peak = rss_mb(agent.pid)
                while reports.count < n0 + args.reports:
                    await _wait_reports(reports, reports.count + 1, args.interval * 10 + 10)
                    peak = max(peak, rss_mb(agent.pid))
                cpu = cpu_s(agent.pid) - cpu0
                elapsed = time.monotonic() - t0
                n = reports.count - n0
                rss_end = rss_mb(agent.pid)
            finally:
                agent.send_signal(signal.SIGTERM)
                await asyncio.wait_for(agent.wait(), 15)
        reports.close()
    loaded: list[str] = json.loads(modules_file.read_text(encoding="utf-8"))
    baseline = _baseline(4.0, loaded, site)
    return {
        "reports": n,
        "interval_s": args.interval,
        "elapsed_s": round(elapsed, 1),
        "agent_rss_mb": round(rss_end, 1),
        "agent_rss_peak_mb": round(peak, 1),
        "rss_goal_mb": GOAL_RSS_MB,
        "rss_goal_met": peak <= GOAL_RSS_MB,
        "agent_cpu_s_per_report": round(cpu / n, 5),
        "agent_cpu_share_of_one_core": round(cpu / elapsed, 4),
        "idle_interpreter_rss_mb": round(baseline["rss_mb"], 1),
        "agent_rss_over_idle_interpreter": round(peak / baseline["rss_mb"], 2),
        "agent_exit_code_on_sigterm": agent.returncode,
        "agent_modules_loaded": len(loaded),
        "agent_loaded_heavy_libraries": {
            name: any(m == name or m.startswith(name + ".") for m in loaded)
            for name in HEAVY_LIBRARIES
        },
        "agent_posfleet_modules": [m for m in loaded if m.startswith("posfleet")],
        "agent_bytecode": "precompiled, as an installed agent has it",
        "rss_mb_by_import": import_breakdown(_importable(loaded), site),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=60)
    parser.add_argument("--interval", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agent-footprint-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
