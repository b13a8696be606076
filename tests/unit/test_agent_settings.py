"""Agent settings reject what a person would get wrong, with a message saying what."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from posfleet.agent.errors import ConfigError
from posfleet.agent.settings import AgentSettings, load_agent_settings

KEY = base64.b64encode(bytes(range(32))).decode()


def _load(tmp_path: Path, **overrides: object) -> AgentSettings:
    return load_agent_settings(
        None, terminal_id="T-1", serial_url="/dev/ttyUSB0", state_dir=tmp_path, **overrides
    )


def test_trusted_firmware_keys_are_base64_ed25519_public_keys(tmp_path: Path) -> None:
    assert _load(tmp_path, trusted_firmware_keys=[KEY]).trusted_firmware_keys == [KEY]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["not base64!"], "not valid base64"),
        ([base64.b64encode(b"short").decode()], "decodes to 5 bytes"),
        ([KEY, KEY], "same key twice"),
    ],
)
def test_bad_firmware_keys_are_refused(tmp_path: Path, keys: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, trusted_firmware_keys=keys)


def test_reconnect_bounds_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reconnect_min_s"):
        _load(tmp_path, reconnect_min_s=30, reconnect_max_s=5)


def test_keys_come_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSFLEET_AGENT_TRUSTED_FIRMWARE_KEYS", f'["{KEY}"]')
    assert _load(tmp_path).trusted_firmware_keys == [KEY]
