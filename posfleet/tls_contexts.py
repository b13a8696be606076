"""TLS contexts: the MQTT clients' (agent, central ingest, command channel), with one
explanation of a failed handshake, and the dashboard's server context.

Every MQTT client verifies the broker: its certificate must chain to the configured CA (or the
system's CAs when none is configured) and name the host the client dialled in its subject
alternative names. A client certificate is sent when one is configured (brokers with
``require_certificate true``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


def client_context(
    ca_file: Path | str | None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
) -> ssl.SSLContext:
    """A verifying client context: TLS 1.2 or newer, hostname checked.

    Raises :class:`OSError` if a file cannot be read and :class:`ssl.SSLError` if it is
    not a certificate (or the key does not match the certificate).
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return context


def server_context(cert_file: Path | str, key_file: Path | str) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the certificate (chain) and key, for the dashboard."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The TLS files of one ``mqtts://`` client: CA to verify the broker, own cert and key."""

    ca_file: Path | None = None
    """``None``: the system's CAs."""
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A verifying client context with these files (see :func:`client_context`)."""
        return client_context(self.ca_file, self.cert_file, self.key_file)


def explain_tls_failure(exc: ssl.SSLError, *, host: str, ca_file: Path | str | None) -> str:
    """What went wrong in a TLS handshake with the broker at ``host``, and what to do.

    Meant for a person reading ``posfleet-agent check`` or a log line.
    """
    trusted = f"the CA in {ca_file}" if ca_file is not None else "the system's CAs"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return (
                f"TLS verification failed: the broker's certificate is not valid for host "
                f"{host!r} ({why}). Connect with a name the certificate lists (broker_url), "
                "or issue the broker a certificate that names this host "
                "(posfleet tls make-server-cert --host ...)"
            )
        return (
            f"TLS verification failed: the certificate of the broker at {host!r} was not "
            f"issued by {trusted} ({why}). Set tls_ca_file to the CA that signed the "
            "broker's certificate (its ca.pem), or ask whoever runs the broker for it"
        )
    return explain_tls_alert(
        str(exc.reason or exc), host=host, ca_file=ca_file, has_client_cert=None
    )


def explain_tls_alert(
    reason: str, *, host: str, ca_file: Path | str | None, has_client_cert: bool | None
) -> str:
    """What a TLS error other than our own verification of the broker means.

    ``reason`` is the OpenSSL text. With TLS 1.3 a broker refuses a client certificate
    (or its absence) after the handshake: as an alert on the first read, or, when it
    closes faster than the alert is read, as an EOF; ``has_client_cert`` (``None``: not
    known) then tells which of the two it was.
    """
    trusted = f"the CA in {ca_file}" if ca_file is not None else "the system's CAs"
    upper = reason.upper()
    abrupt = "EOF OCCURRED" in upper
    missing = "CERTIFICATE_REQUIRED" in upper or "HANDSHAKE_FAILURE" in upper
    if missing or (abrupt and has_client_cert is False):
        return (
            f"TLS connection to {host!r} refused ({reason}): the broker requires a client "
            "certificate; set tls_cert_file and tls_key_file to this terminal's certificate "
            "(posfleet tls make-client-cert)"
        )
    untrusted = "UNKNOWN_CA" in upper or "BAD_CERTIFICATE" in upper
    if untrusted or (abrupt and has_client_cert):
        return (
            f"TLS connection to {host!r} refused ({reason}): the broker does not accept this "
            "terminal's client certificate (tls_cert_file); it must be signed by the CA "
            "the broker's cafile names, and be valid"
        )
    return (
        f"TLS handshake with {host!r} failed ({reason}): is the port a TLS listener? "
        f"The client trusts {trusted}"
    )
