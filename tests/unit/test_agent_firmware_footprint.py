"""The firmware updater costs a terminal no signature code until an offer arrives."""

from __future__ import annotations

import subprocess
import sys

from posfleet.agent.firmware_download import TERMINAL_HEADER
from posfleet.firmware.download_tokens import TERMINAL_HEADER as SERVICE_HEADER


def test_starting_the_agent_does_not_load_cryptography() -> None:
    script = """
import sys
import posfleet.agent.cli, posfleet.agent.runner, posfleet.agent.daemon
from posfleet.agent.settings import AgentSettings
AgentSettings(terminal_id="T-1", serial_url="/dev/null")
print(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_agent_names_itself_in_the_header_the_download_service_reads() -> None:
    assert TERMINAL_HEADER == SERVICE_HEADER
