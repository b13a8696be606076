"""Certificates for a test or small deployment: a private CA, a server and terminal certs.

A real deployment may use its own PKI; this module makes the three kinds of certificate
posfleet needs, with the extensions a strict TLS client checks:

* the **CA** (``ca.pem`` / ``ca.key``): a self-signed root, ``cA`` true, only allowed to
  sign certificates and CRLs;
* a **server** certificate (broker or dashboard): every host name and IP address a client
  dials as a subject alternative name (clients match those, never the common name),
  extended key usage ``serverAuth``;
* a **client** certificate per terminal: the terminal id as common name (what Mosquitto's
  ``use_identity_as_username`` takes as the login) and in a ``urn:posfleet:terminal:``
  alternative name, extended key usage ``clientAuth``.

Keys are ECDSA P-256: quick to make and accepted by every TLS stack we run on. Private
keys are written readable by their owner only.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from posfleet.central.errors import TlsMaterialError

CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 825
"""The longest leaf lifetime browsers and most TLS libraries still accept."""
TERMINAL_URN = "urn:posfleet:terminal:"
"""Prefix of a client certificate's alternative name; the terminal id follows."""
_BACKDATE = timedelta(minutes=5)
"""Certificates start a little in the past, so a client whose clock lags still accepts them."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (0644) and the key (0600), creating the folders."""
        _write(cert_path, self.cert_pem(), 0o644)
        _write(key_path, self.key_pem(), 0o600)


@dataclass(frozen=True, slots=True)
class CaFiles:
    """Where a CA made by :func:`make_ca` keeps its two files in a folder."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        """``ca.pem``: what clients and the broker trust."""
        return self.directory / "ca.pem"

    @property
    def key_path(self) -> Path:
        """``ca.key``: signs new certificates; keep it off the servers."""
        return self.directory / "ca.key"


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with its final mode, so the key is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _name(common_name: str) -> x509.Name:
    if not common_name or len(common_name) > 64:
        raise TlsMaterialError(f"common name {common_name!r} must be 1 to 64 characters")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "posfleet"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int, now: datetime | None) -> tuple[datetime, datetime]:
    if days < 1:
        raise TlsMaterialError(f"validity must be at least one day, not {days}")
    start = (now or datetime.now(UTC)) - _BACKDATE
    return start, start + _BACKDATE + timedelta(days=days)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str = "posfleet test CA", *, days: int = CA_VALID_DAYS, now: datetime | None = None
) -> Issued:
    """A new self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    start, end = _validity(days, now)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for given in hosts:
        host = given.strip()
        if not host:
            raise TlsMaterialError("a server certificate's host names must not be empty")
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host.lower()))
    if not entries:
        raise TlsMaterialError("a server certificate needs at least one host name or address")
    return entries


def _issue(
    ca: Issued,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName],
    *,
    days: int,
    now: datetime | None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, now)
    end = min(end, ca.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def make_server_cert(
    ca: Issued,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    *,
    days: int = LEAF_VALID_DAYS,
    now: datetime | None = None,
) -> Issued:
    """A server certificate for ``hosts`` (names and IP addresses), signed by ``ca``."""
    san = _san_entries(hosts)
    return _issue(ca, hosts[0].strip(), ExtendedKeyUsageOID.SERVER_AUTH, san, days=days, now=now)


def make_client_cert(
    ca: Issued, identity: str, *, days: int = LEAF_VALID_DAYS, now: datetime | None = None
) -> Issued:
    """A client certificate whose common name is ``identity`` (a terminal id), signed by ``ca``.

    It also names the terminal as ``urn:posfleet:terminal:<id>`` in its alternative names:
    strict verifiers want that extension in every end-entity certificate.
    """
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{TERMINAL_URN}{identity}")]
    return _issue(ca, identity, ExtendedKeyUsageOID.CLIENT_AUTH, san, days=days, now=now)


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """Read a certificate and its EC private key (e.g. the CA made earlier)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise TlsMaterialError(
            f"cannot read {exc.filename}: {exc.strerror or exc}; make one with "
            "'posfleet tls make-ca'"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise TlsMaterialError(
            f"{cert_path} / {key_path} are not a PEM certificate and unencrypted key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsMaterialError(f"{key_path} is not an EC private key (posfleet tls makes those)")
    if certificate.public_key() != key.public_key():
        raise TlsMaterialError(f"{key_path} is not the private key of {cert_path}")
    return Issued(certificate, key)


def load_ca(files: CaFiles) -> Issued:
    """The CA kept in ``files.directory``, checked to be a CA."""
    ca = load_issued(files.cert_path, files.key_path)
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    if not constraints.value.ca:
        raise TlsMaterialError(f"{files.cert_path} is not a CA certificate")
    return ca


def describe(issued: Issued) -> str:
    """One line for a person: subject, names, expiry."""
    cert = issued.certificate
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    names = ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = [*san.get_values_for_type(x509.DNSName)]
        hosts += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        names = " for " + ", ".join(hosts) if hosts else ""
    except x509.ExtensionNotFound:
        pass
    subject = str(cn[0].value) if cn else cert.subject.rfc4514_string()
    return f"{subject!r}{names}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
