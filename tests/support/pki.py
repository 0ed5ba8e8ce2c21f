"""Throw-away certificates: a CA and what it signs, as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Issued:
    cert: str   # PEM file paths
    key: str


class Pki:
    """A CA and certificates it signs, as PEM files in ``directory``.

    The integration tests use it too: the controller's certificate names
    127.0.0.1 and localhost, a switch's only its common name.
    """

    def __init__(self, directory: Path, name: str = "mpa-test-ca"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = self._build(_name(name), self._key.public_key(), ca=True)
        self.ca = str(self.directory / f"{name}.pem")
        Path(self.ca).write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(_name(common_name), key.public_key(), ca=False, server=server)
        paths = Issued(str(self.directory / f"{common_name}.pem"),
                       str(self.directory / f"{common_name}-key.pem"))
        Path(paths.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        Path(paths.key).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        Path(paths.key).chmod(0o600)
        return paths

    def _build(self, subject, public_key, *, ca: bool, server: bool = False):
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(self._cert.subject if not ca else subject)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(self._key, hashes.SHA256())
