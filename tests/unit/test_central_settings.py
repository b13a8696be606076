"""The central settings: TOML file, ``POSFLEET_*`` environment, and readable errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from posfleet.central.settings import SettingsError, load_central_settings


def test_toml_and_environment_combine_with_the_environment_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "central.toml"
    config.write_text(
        'broker_url = "mqtts://mqtt.example.net"\n'
        "http_port = 9000\n"
        "[diagnostics]\n"
        'webhook_urls = ["https://hooks.example.net/posfleet"]\n'
        "flap_window_s = 300\n"
    )
    monkeypatch.setenv("POSFLEET_DIAGNOSTICS__FLAP_WINDOW_S", "60")
    monkeypatch.setenv("POSFLEET_HTTP_PORT", "9100")

    settings = load_central_settings(config)

    assert (settings.broker_host, settings.broker_port) == ("mqtt.example.net", 8883)
    assert settings.http_port == 9100
    assert settings.diagnostics.webhook_urls == ("https://hooks.example.net/posfleet",)
    assert settings.diagnostics.flap_window_s == 60


def test_every_bad_value_is_named_in_one_error(tmp_path: Path) -> None:
    config = tmp_path / "central.toml"
    config.write_text('broker_url = "http://x"\nhttp_port = 70000\n[diagnostics]\nbogus = 1\n')

    with pytest.raises(SettingsError) as info:
        load_central_settings(config)

    message = str(info.value)
    assert str(config) in message
    assert "broker_url 'http://x' must look like mqtt://" in message
    assert "http_port" in message
    assert "diagnostics.bogus" in message


def test_a_missing_config_file_is_an_error_not_silence(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_central_settings(tmp_path / "nope.toml")
