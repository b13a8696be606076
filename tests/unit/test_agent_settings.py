"""Agent settings reject what a person would get wrong, with a message saying what."""

from __future__ import annotations

from pathlib import Path

import pytest

from posfleet.agent.errors import ConfigError
from posfleet.agent.settings import AgentSettings, load_agent_settings
from posfleet.firmware.signing import generate_private_key, public_key_pem


def _load(tmp_path: Path, **overrides: object) -> AgentSettings:
    return load_agent_settings(
        None, terminal_id="T-1", serial_url="/dev/ttyUSB0", state_dir=tmp_path, **overrides
    )


def _key_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.pub"
    path.write_bytes(public_key_pem(generate_private_key().public_key()))
    return path


def test_two_firmware_keys_are_trusted_at_once_and_revoked_ids_refused(tmp_path: Path) -> None:
    old, new = _key_file(tmp_path, "old"), _key_file(tmp_path, "new")
    settings = _load(
        tmp_path,
        firmware_trusted_keys={"rel-2025": old, "rel-2026": new},
        firmware_revoked_key_ids=["rel-2024"],
    )
    keys = settings.firmware_keys()
    assert set(keys.keys) == {"rel-2025", "rel-2026"} and keys.revoked == {"rel-2024"}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (b"not a key", "not a PEM public key")],
)
def test_unreadable_firmware_key_files_are_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "release.pub"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, firmware_trusted_keys={"rel-1": path})


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        _load(tmp_path, timezone="Europe/Atlantis")


def test_reconnect_bounds_must_be_ordered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reconnect_min_s"):
        _load(tmp_path, reconnect_min_s=30, reconnect_max_s=5)


def test_firmware_keys_come_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _key_file(tmp_path, "env")
    monkeypatch.setenv("POSFLEET_AGENT_FIRMWARE_TRUSTED_KEYS", f'{{"rel-env": "{path}"}}')
    assert _load(tmp_path).firmware_trusted_keys == {"rel-env": path}


def test_arguments_win_over_the_environment_which_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'terminal_id = "T-FILE"\nserial_url = "/dev/ttyS0"\nhealth_interval_s = 30\n'
        'site_id = "file-site"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("POSFLEET_AGENT_HEALTH_INTERVAL_S", "45")
    monkeypatch.setenv("posfleet_agent_site_id", "env-site")  # names in any case
    monkeypatch.setenv("POSFLEET_AGENT_FIRMWARE_REVOKED_KEY_IDS", '["rel-2023"]')
    settings = load_agent_settings(config, site_id="arg-site", state_dir=tmp_path)
    assert settings.terminal_id == "T-FILE" and settings.health_interval_s == 45
    assert settings.site_id == "arg-site" and settings.firmware_revoked_key_ids == ["rel-2023"]


def test_a_broken_file_or_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('terminal_id = "T-1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"agent\.toml is not valid TOML"):
        load_agent_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_agent_settings(tmp_path / "missing.toml")
    monkeypatch.setenv("POSFLEET_AGENT_FIRMWARE_REVOKED_KEY_IDS", "rel-2023")
    with pytest.raises(ConfigError, match="POSFLEET_AGENT_FIRMWARE_REVOKED_KEY_IDS must be JSON"):
        _load(tmp_path)
    monkeypatch.delenv("POSFLEET_AGENT_FIRMWARE_REVOKED_KEY_IDS")
    config.write_text('terminal_id = "T-1"\nserial_url = "/dev/x"\nhealth_interval = 5\n')
    with pytest.raises(ConfigError, match="health_interval: Extra inputs are not permitted"):
        load_agent_settings(config)


def test_the_agent_loads_its_settings_without_pydantic_settings() -> None:
    import subprocess
    import sys

    script = (
        "import sys, posfleet.agent.cli, posfleet.agent.runner\n"
        "from posfleet.agent.settings import load_agent_settings\n"
        "load_agent_settings(None, terminal_id='T-1', serial_url='/dev/null')\n"
        "print(sorted(m for m in sys.modules if m.startswith('pydantic_settings')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
