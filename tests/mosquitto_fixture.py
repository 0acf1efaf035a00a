"""A real mosquitto broker for the MQTT tests, on 127.0.0.1 with its own config.

Three listeners on free ports: plain TCP, TLS (server certificate from a throwaway CA made with
``cryptography``) and TLS that requires a client certificate. Authentication by password file
(hashed by ``mosquitto_passwd``), authorisation by an ACL file. Readiness is awaited from the
broker's own log line and shutdown by waiting for the process, never guessed with sleeps.

Needs Debian ``mosquitto`` (which also ships ``mosquitto_passwd``).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PREFIX = "coach_test"

#: Test users: name -> password. ``runner`` publishes telemetry and reads its config/set;
#: ``coach`` may tune; ``viewer`` may only read.
USERS = {"runner": "runner-secret-7f3a", "coach": "coach-secret-91bd", "viewer": "viewer-pw-22c1"}

ACL = f"""\
user runner
topic write {PREFIX}/+/events
topic write {PREFIX}/+/strides
topic write {PREFIX}/+/cues
topic write {PREFIX}/+/quality
topic write {PREFIX}/+/status
topic write {PREFIX}/+/config/current
topic write {PREFIX}/+/config/error
topic read {PREFIX}/+/config/set

user coach
topic readwrite {PREFIX}/#

user viewer
topic read {PREFIX}/#
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Certificates:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path) -> Certificates:
    """Create the CA and certificates in ``folder`` (EC P-256, valid one day)."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("coach test CA"))
        .issuer_name(name("coach test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common: str, usage: x509.ObjectIdentifier, server: bool) -> tuple[bytes, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key

    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_pem, server_key = issue("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, server=True)
    client_pem, client_key = issue("runner", ExtendedKeyUsageOID.CLIENT_AUTH, server=False)
    (folder / "server.pem").write_bytes(server_pem)
    (folder / "client.pem").write_bytes(client_pem)
    return Certificates(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=write_key(folder / "server.key", server_key),
        client_cert=folder / "client.pem",
        client_key=write_key(folder / "client.key", client_key),
    )


@dataclass
class Mosquitto:
    """A mosquitto process with a fixed config; ``stop()`` and ``start()`` keep the ports."""

    folder: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    mtls_port: int = field(default_factory=free_port)
    certificates: Certificates | None = None
    log: list[str] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None
    _running: threading.Event = field(default_factory=threading.Event)

    def write_config(self) -> Path:
        """Password file, ACL and mosquitto.conf in ``folder``."""
        passwd = self.folder / "passwd"
        passwd.write_text("")
        for user, password in USERS.items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwd), user, password],
                check=True,
                capture_output=True,
            )
        (self.folder / "acl").write_text(ACL)
        self.certificates = make_certificates(self.folder)
        c = self.certificates
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {self.folder / 'acl'}",
            "persistence false",
            "user root",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp false",
            f"listener {self.port} 127.0.0.1",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {c.ca}",
            f"certfile {c.server_cert}",
            f"keyfile {c.server_key}",
            f"listener {self.mtls_port} 127.0.0.1",
            f"cafile {c.ca}",
            f"certfile {c.server_cert}",
            f"keyfile {c.server_key}",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it logs that it is running."""
        conf = self.folder / "mosquitto.conf"
        if not conf.exists():
            conf = self.write_config()
        self._running.clear()
        self._process = subprocess.Popen(
            [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_log, args=(self._process,), daemon=True).start()
        if not self._running.wait(timeout_s):
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log[-20:]))

    def _read_log(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.log.append(line.rstrip())
            if " running" in line and "mosquitto version" in line:
                self._running.set()

    def stop(self) -> None:
        """Terminate the broker (its sockets close at once) and wait for it to exit.

        mosquitto 2.0 can miss a SIGTERM that arrives just after it logged "running" (it sets
        its run flag after that line), hence the SIGKILL fallback.
        """
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None


def prepare_mosquitto(folder: Path) -> Mosquitto:
    """A configured broker in ``folder``, not started; skips when mosquitto is not installed."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder)
    broker.write_config()
    return broker


def start_mosquitto(folder: Path) -> Mosquitto:
    """A running broker in ``folder``; skips when mosquitto is not installed."""
    broker = prepare_mosquitto(folder)
    broker.start()
    return broker
