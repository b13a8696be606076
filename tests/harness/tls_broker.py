"""A private Mosquitto with a TLS listener beside its plain one, and the CA behind it.

The certificates come from :mod:`posfleet.central.tls_material`, as an operator's would
from ``posfleet tls ...``: a CA, a server certificate for ``127.0.0.1`` and ``localhost``,
and on request a client certificate per terminal. A second, unrelated CA stands for a
terminal configured with the wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posfleet.central.mosquitto import MosquittoBroker, free_port
from posfleet.central.tls_material import (
    CaFiles,
    Issued,
    make_ca,
    make_client_cert,
    make_server_cert,
)
from tests.harness.private_broker import PrivateBroker

TLS_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The PEM files of a test PKI, made once into ``directory``."""

    directory: Path
    ca: Issued

    @classmethod
    def create(cls, directory: Path) -> TlsMaterial:
        """A new CA and a server certificate for :data:`TLS_HOSTS` under ``directory``."""
        files = CaFiles(directory / "ca")
        ca = make_ca("posfleet test CA")
        ca.write(files.cert_path, files.key_path)
        material = cls(directory, ca)
        make_server_cert(ca, TLS_HOSTS).write(material.server_cert, material.server_key)
        return material

    @property
    def ca_cert(self) -> Path:
        """What clients trust."""
        return CaFiles(self.directory / "ca").cert_path

    @property
    def server_cert(self) -> Path:
        """The broker's (or dashboard's) certificate."""
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        """Its private key."""
        return self.directory / "server.key"

    def client_cert(self, identity: str) -> tuple[Path, Path]:
        """A client certificate (CN ``identity``) and its key, made on first use."""
        cert, key = self.directory / f"{identity}.pem", self.directory / f"{identity}.key"
        if not cert.exists():
            make_client_cert(self.ca, identity).write(cert, key)
        return cert, key

    def unrelated_ca(self) -> Path:
        """A CA that signed nothing the broker presents: the wrong ``tls_ca_file``."""
        path = self.directory / "other-ca" / "ca.pem"
        if not path.exists():
            other = make_ca("some other CA")
            other.write(path, path.with_suffix(".key"))
        return path


_LISTENER_OPTIONS = (
    "allow_anonymous",
    "password_file",
    "acl_file",
    "use_username_as_clientid",
)
"""The options a TLS twin copies from the plain listener it stands beside."""


class _TlsMosquitto(MosquittoBroker):
    """A :class:`MosquittoBroker` with a TLS twin of each plain listener.

    Each twin has its own port and the same logins, ACL and client-id rule as the
    listener it copies, plus the test CA's certificates; its options follow it.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        auth_dir: Path,
        material: TlsMaterial,
        require_certificate: bool,
        use_identity_as_username: bool,
    ) -> None:
        super().__init__(work_dir, auth_dir=auth_dir)
        self._material = material
        self._require_certificate = require_certificate
        self._use_identity = use_identity_as_username
        self._tls_ports: dict[int, int] = {}

    def tls_port_for(self, plain_port: int) -> int:
        """The TLS twin's port of the listener on ``plain_port``; stable across restarts."""
        if plain_port not in self._tls_ports:
            self._tls_ports[plain_port] = free_port(self.host)
        return self._tls_ports[plain_port]

    def render_config(self) -> str:
        """The plain configuration, then one TLS listener per plain one."""
        base = super().render_config()
        twins: list[str] = []
        for plain_port, host, options in _listeners(base):
            twins += [
                f"listener {self.tls_port_for(plain_port)} {host}",
                *options,
                f"cafile {self._material.ca_cert}",
                f"certfile {self._material.server_cert}",
                f"keyfile {self._material.server_key}",
                "tls_version tlsv1.2",
            ]
            if plain_port == self.port:  # client certificates: the terminals' listener
                twins += [
                    f"require_certificate {str(self._require_certificate).lower()}",
                    f"use_identity_as_username {str(self._use_identity).lower()}",
                ]
            twins.append("")
        return base + "\n".join(["# TLS twins of the listeners above (tests).", *twins])


def _listeners(config: str) -> list[tuple[int, str, list[str]]]:
    """Each ``listener PORT HOST`` line with the per-listener options after it."""
    found: list[tuple[int, str, list[str]]] = []
    for line in config.splitlines():
        words = line.split()
        if words[:1] == ["listener"] and len(words) == 3:
            found.append((int(words[1]), words[2], []))
        elif found and words and words[0] in _LISTENER_OPTIONS:
            found[-1][2].append(line)
    return found


class TlsBroker(PrivateBroker):
    """A :class:`PrivateBroker` that also listens with TLS, beside each plain listener.

    :attr:`tls_url` is for terminals, :attr:`central_tls_url` for the central service.
    ``require_certificate`` makes the terminals' TLS listener refuse clients without a
    certificate from the test CA; ``use_identity_as_username`` then logs them in as the
    certificate's common name (their password is not asked).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        require_certificate: bool = False,
        use_identity_as_username: bool = False,
    ) -> None:
        super().__init__(work_dir)
        self.tls = TlsMaterial.create(work_dir / "tls")
        self._tls_process = _TlsMosquitto(
            work_dir,
            auth_dir=self.auth.directory,
            material=self.tls,
            require_certificate=require_certificate,
            use_identity_as_username=use_identity_as_username,
        )
        self.process = self._tls_process

    @property
    def tls_port(self) -> int:
        """The terminals' TLS listener."""
        return self._tls_process.tls_port_for(self.port)

    @property
    def tls_url(self) -> str:
        """``mqtts://127.0.0.1:PORT`` for terminals, verifiable with the test CA."""
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def central_tls_url(self) -> str:
        """``mqtts://127.0.0.1:PORT`` of the centre's TLS listener."""
        return f"mqtts://{self.central_host}:{self._tls_process.tls_port_for(self.central_port)}"
