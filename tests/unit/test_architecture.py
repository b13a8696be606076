"""DESIGN.md's import rules, checked on the source so a violation fails the build."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "posfleet"
CENTRAL = {"broker_bridge", "diagnostics", "dashboard", "store", "central"}

# package -> packages of ours it must never import
FORBIDDEN: dict[str, set[str]] = {
    "contract": {
        "agent", "simulator", "firmware", "broker_bridge", "diagnostics", "dashboard",
        "store", "central",
    },
    "agent": CENTRAL | {"simulator"},
    "store": {"agent", "simulator", "broker_bridge", "diagnostics", "firmware", "dashboard",
              "central", "helpdesk"},
    "broker_bridge": {"dashboard", "central", "simulator"},
    "diagnostics": {"dashboard", "central", "simulator"},
    "firmware": {"agent", "dashboard", "central", "simulator"},
    "simulator": CENTRAL,
    "helpdesk": {"agent", "simulator", "broker_bridge", "diagnostics", "firmware", "dashboard",
                 "central"},
    # Reports read what diagnostics and firmware keep; the pages and the CLI show them.
    "reports": {"agent", "simulator", "broker_bridge", "dashboard", "central"},
    "knowledge": {"agent", "simulator", "broker_bridge", "firmware", "dashboard", "central"},
    # Languages are below everything that shows text: only the users table's setting.
    "i18n": {"agent", "simulator", "broker_bridge", "diagnostics", "firmware", "dashboard",
             "central", "helpdesk", "reports", "knowledge"},
}  # fmt: skip


def _our_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "posfleet" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_the_import_rules(package: str) -> None:
    violations = [
        f"{path.relative_to(PACKAGE.parent)} imports posfleet.{name}"
        for path in sorted((PACKAGE / package).rglob("*.py"))
        for name in sorted(_our_imports(path) & FORBIDDEN[package])
    ]
    assert violations == []


def test_agent_runs_without_the_central_stack() -> None:
    """The agent must import on a terminal that has no aiohttp, SQLAlchemy or InfluxDB client."""
    script = """
import importlib.abc, sys
BLOCKED = {"aiohttp", "sqlalchemy", "influxdb_client", "alembic", "asyncpg", "aiosqlite", "argon2"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed on a terminal")
        return None
sys.meta_path.insert(0, Block())
import posfleet.agent.cli, posfleet.agent.runner, posfleet.agent.daemon
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "module",
    ["posfleet.firmware.signing", "posfleet.firmware.download_tokens", "posfleet.firmware"],
)
def test_firmware_verification_imports_without_the_central_stack(module: str) -> None:
    """The agent verifies manifests with posfleet.firmware.signing on the terminal itself."""
    script = f"""
import importlib.abc, sys
BLOCKED = {{"aiohttp", "sqlalchemy", "influxdb_client", "alembic", "asyncpg", "aiosqlite",
           "argon2", "rich", "yaml"}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on a terminal")
        return None
sys.meta_path.insert(0, Block())
import {module}
from posfleet.firmware.signing import TrustedKeys, sign_manifest
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
