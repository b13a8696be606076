"""The [firmware] settings: release keys by id, the token secret, caps, base URL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from posfleet.central.settings import SettingsError, load_central_settings
from posfleet.firmware.errors import SignatureError
from tests.harness.firmware_release import release_key


def test_a_firmware_table_with_two_keys_during_a_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = release_key(tmp_path, "release-2026")
    new = release_key(tmp_path, "release-2027")
    config = tmp_path / "central.toml"
    config.write_text(
        f"""
var_dir = "{tmp_path / "var"}"
[firmware]
trusted_keys = {{ release-2026 = "{old.public_path}", release-2027 = "{new.public_path}" }}
revoked_key_ids = ["release-2025"]
download_rate_limit_bps = 1048576
public_base_url = "https://fleet.example.com/"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("POSFLEET_FIRMWARE__DOWNLOAD_TOKEN_TTL_S", "7200")
    settings = load_central_settings(config)
    trusted = settings.firmware.trusted()
    assert sorted(trusted.keys) == ["release-2026", "release-2027"]
    assert trusted.revoked == frozenset({"release-2025"})
    assert settings.firmware.download_token_ttl_s == 7200
    assert settings.firmware_base_url == "https://fleet.example.com"
    assert settings.artifacts_dir == tmp_path / "var" / "artifacts"


def test_the_token_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_central_settings(None, var_dir=tmp_path / "var")
    first = settings.download_token_secret()
    assert len(first) == 32
    assert settings.download_token_secret() == first
    mode = (tmp_path / "var" / "firmware-token-secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_a_configured_secret_wins_and_a_short_one_is_refused(tmp_path: Path) -> None:
    secret = "ab" * 32
    settings = load_central_settings(
        None, var_dir=tmp_path, firmware={"download_token_secret": secret}
    )
    assert settings.download_token_secret() == bytes.fromhex(secret)
    with pytest.raises(SettingsError, match="at least 64 hex digits"):
        load_central_settings(None, firmware={"download_token_secret": "abcd"})
    with pytest.raises(SettingsError, match="public_base_url must start with http"):
        load_central_settings(None, firmware={"public_base_url": "fleet.example.com"})


def test_a_missing_key_file_names_the_file(tmp_path: Path) -> None:
    settings = load_central_settings(
        None, firmware={"trusted_keys": {"release-2026": str(tmp_path / "nope.pub")}}
    )
    with pytest.raises(
        SignatureError, match=r"release key 'release-2026': .*nope.pub does not exist"
    ):
        settings.firmware.trusted()
