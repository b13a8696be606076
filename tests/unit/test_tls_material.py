"""``posfleet tls``: the CA, server and client certificates a strict TLS client accepts."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from posfleet.agent.errors import ConfigError
from posfleet.agent.settings import load_agent_settings
from posfleet.central.cli import main
from posfleet.central.errors import TlsMaterialError
from posfleet.central.settings import CentralSettings
from posfleet.central.tls_material import (
    CaFiles,
    load_ca,
    make_ca,
    make_client_cert,
    make_server_cert,
)
from tests.harness.doc_commands import commands_in

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


T = TypeVar("T", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def test_the_ca_may_sign_certificates_and_nothing_else() -> None:
    ca = make_ca("fleet CA", days=3650, now=NOW).certificate
    constraints = _ext(ca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = _ext(ca, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ca.issuer == ca.subject
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "fleet CA"
    assert ca.not_valid_before_utc <= NOW < ca.not_valid_after_utc
    assert ca.not_valid_after_utc - NOW >= timedelta(days=3650) - timedelta(minutes=1)


def test_a_server_certificate_names_every_host_and_verifies_for_each() -> None:
    ca = make_ca(now=NOW)
    server = make_server_cert(ca, ["127.0.0.1", "localhost", "Broker.Example"], days=30, now=NOW)
    cert = server.certificate
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "broker.example"]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = _ext(cert, x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not _ext(cert, x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc <= NOW
    assert cert.not_valid_after_utc - NOW <= timedelta(days=30)
    assert cert.not_valid_after_utc - NOW > timedelta(days=29)

    store = verification.Store([ca.certificate])
    for name in (
        x509.DNSName("localhost"),
        x509.DNSName("broker.example"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        verifier = verification.PolicyBuilder().store(store).time(NOW).build_server_verifier(name)
        chain = verifier.verify(cert, [])
        assert chain[-1] == ca.certificate
    stranger = verification.PolicyBuilder().store(store).time(NOW)
    with pytest.raises(verification.VerificationError):
        stranger.build_server_verifier(x509.DNSName("evil.example")).verify(cert, [])
    other_store = verification.Store([make_ca("other", now=NOW).certificate])
    with pytest.raises(verification.VerificationError):
        (
            verification.PolicyBuilder()
            .store(other_store)
            .time(NOW)
            .build_server_verifier(x509.DNSName("localhost"))
            .verify(cert, [])
        )


def test_a_client_certificate_carries_the_terminal_id_for_client_auth_only() -> None:
    ca = make_ca(now=NOW)
    client = make_client_cert(ca, "T-0042", now=NOW).certificate
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T-0042"
    assert list(_ext(client, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(client, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:posfleet:terminal:T-0042"
    ]
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca.certificate]))
        .time(NOW)
        .build_client_verifier()
    )
    assert verifier.verify(client, []).chain[-1] == ca.certificate


def test_a_leaf_never_outlives_its_ca() -> None:
    ca = make_ca(days=10, now=NOW)
    server = make_server_cert(ca, ["localhost"], days=825, now=NOW)
    assert server.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


@pytest.mark.parametrize("hosts", [[], [""], ["  "]])
def test_a_server_certificate_needs_real_host_names(hosts: list[str]) -> None:
    with pytest.raises(TlsMaterialError, match="host name"):
        make_server_cert(make_ca(now=NOW), hosts)


def test_cli_writes_a_working_set_with_private_keys_for_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir = tmp_path / "ca"
    assert main(["tls", "make-ca", "--ca-dir", str(ca_dir)]) == 0
    server = tmp_path / "broker.pem"
    argv = ["tls", "make-server-cert", "--ca-dir", str(ca_dir), "--out", str(server)]
    assert main([*argv, "--host", "127.0.0.1", "--host", "localhost"]) == 0
    client = tmp_path / "T-0001.pem"
    argv = ["tls", "make-client-cert", "--ca-dir", str(ca_dir), "--out", str(client)]
    assert main([*argv, "--terminal-id", "T-0001"]) == 0
    out = capsys.readouterr().out
    assert "'127.0.0.1' for localhost, 127.0.0.1" in out
    assert "client certificate 'T-0001'" in out
    for key in (ca_dir / "ca.key", tmp_path / "broker.key", tmp_path / "T-0001.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ca = load_ca(CaFiles(ca_dir))
    issued = x509.load_pem_x509_certificate(server.read_bytes())
    assert issued.issuer == ca.certificate.subject

    # A second make-ca would orphan everything the first one signed.
    assert main(["tls", "make-ca", "--ca-dir", str(ca_dir)]) == 1
    assert "exists" in capsys.readouterr().err
    assert load_ca(CaFiles(ca_dir)).certificate == ca.certificate
    assert main([*argv, "--terminal-id", "not a terminal id"]) == 1
    assert "invalid terminal id" in capsys.readouterr().err
    assert main([*argv[:2], "--ca-dir", str(tmp_path / "none"), *argv[4:], "--terminal-id", "T-1"])
    assert "make-ca" in capsys.readouterr().err


def test_a_certificate_is_not_a_ca(tmp_path: Path) -> None:
    ca = make_ca(now=NOW)
    leaf = make_server_cert(ca, ["localhost"], now=NOW)
    leaf.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    with pytest.raises(TlsMaterialError, match="not a CA"):
        load_ca(CaFiles(tmp_path))
    make_ca(now=NOW).write(tmp_path / "other.pem", tmp_path / "ca.key")
    with pytest.raises(TlsMaterialError, match="not the private key"):
        load_ca(CaFiles(tmp_path))


def test_agent_settings_check_the_tls_files(tmp_path: Path) -> None:
    ca = make_ca(now=NOW)
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    (tmp_path / "junk.pem").write_text("not a certificate", encoding="utf-8")
    base = {"terminal_id": "T-1", "serial_url": "socket://127.0.0.1:1", "state_dir": tmp_path}
    tls = base | {"broker_url": "mqtts://broker.example"}
    with pytest.raises(ConfigError, match="cannot read"):
        load_agent_settings(None, **tls, tls_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="not a PEM file"):
        load_agent_settings(None, **tls, tls_ca_file=tmp_path / "junk.pem")
    with pytest.raises(ConfigError, match="set both or neither"):
        load_agent_settings(None, **tls, tls_cert_file=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="not mqtts://"):
        load_agent_settings(None, **base, tls_ca_file=tmp_path / "ca.pem")
    settings = load_agent_settings(None, **tls, tls_ca_file=tmp_path / "ca.pem")
    assert settings.tls_ca_file == tmp_path / "ca.pem"


def test_central_settings_pair_the_tls_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        CentralSettings(var_dir=tmp_path, dashboard_tls_cert=tmp_path / "d.pem")
    with pytest.raises(ValueError, match="not mqtts://"):
        CentralSettings(var_dir=tmp_path, broker_tls_ca_file=tmp_path / "ca.pem")
    plain = CentralSettings(var_dir=tmp_path)
    assert plain.broker_tls is None
    assert plain.dashboard_scheme == "http"
    settings = CentralSettings(
        var_dir=tmp_path,
        broker_url="mqtts://broker.example",
        broker_tls_ca_file=tmp_path / "ca.pem",
        dashboard_tls_cert=tmp_path / "d.pem",
        dashboard_tls_key=tmp_path / "d.key",
    )
    assert settings.broker_tls is not None
    assert settings.broker_tls.ca_file == tmp_path / "ca.pem"
    assert settings.broker_port == 8883
    assert settings.firmware_base_url.startswith("https://")


def test_the_documented_commands_make_a_pki_that_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "operations-tls.md"
    commands = [c for c in commands_in(doc.read_text(encoding="utf-8"), doc.name)]
    assert [c.argv[:3] for c in commands][:1] == [("posfleet", "tls", "make-ca")]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(list(command.argv[1:])) == 0, command.text
    capsys.readouterr()
    ca = load_ca(CaFiles(tmp_path / "pki" / "ca"))
    broker = x509.load_pem_x509_certificate((tmp_path / "pki" / "broker.pem").read_bytes())
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca.certificate]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("10.0.0.5")))
    )
    assert verifier.verify(broker, [])[-1] == ca.certificate
    terminal = x509.load_pem_x509_certificate((tmp_path / "pki" / "T-00042.pem").read_bytes())
    assert terminal.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "T-00042"
    assert (tmp_path / "pki" / "dashboard.key").exists()
