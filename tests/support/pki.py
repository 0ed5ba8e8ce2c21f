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
    serial: int = 0


class Pki:
    """A CA and certificates it signs, as PEM files in ``directory``.

    The integration tests use it too: the controller's certificate names
    127.0.0.1 and localhost, a switch's only its common name.

    For EAP it is a domain's CA: an authentication server's certificate names
    the server (``dns_names``), an MN's has its NAI as common name, and
    ``revoke`` lists a certificate in ``revoked`` and in the CRL at ``crl``.
    """

    def __init__(self, directory: Path, name: str = "mpa-test-ca"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = self._build(_name(name), self._key.public_key(), ca=True)
        self.ca = str(self.directory / f"{name}.pem")
        Path(self.ca).write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.revoked: set[int] = set()
        self.crl = str(self.directory / f"{name}-crl.pem")
        self._write_crl()

    def issue(self, common_name: str, *, server: bool = False,
              dns_names: tuple[str, ...] = (), stem: str | None = None) -> Issued:
        """A certificate for ``common_name`` in ``stem``.pem and its key in
        ``stem``-key.pem (``stem`` is the common name unless given)."""
        stem = stem or common_name
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(_name(common_name), key.public_key(), ca=False, server=server,
                           dns_names=dns_names)
        paths = Issued(str(self.directory / f"{stem}.pem"),
                       str(self.directory / f"{stem}-key.pem"), cert.serial_number)
        Path(paths.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        Path(paths.key).write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        Path(paths.key).chmod(0o600)
        return paths

    def revoke(self, issued: Issued) -> None:
        """Revoke ``issued``: its serial joins ``revoked`` and the CRL is rewritten."""
        self.revoked.add(issued.serial)
        self._write_crl()

    def _write_crl(self) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self._cert.subject)
                   .last_update(now - datetime.timedelta(minutes=5))
                   .next_update(now + datetime.timedelta(days=1)))
        for serial in sorted(self.revoked):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        crl = builder.sign(self._key, hashes.SHA256())
        Path(self.crl).write_bytes(crl.public_bytes(serialization.Encoding.PEM))

    def _build(self, subject, public_key, *, ca: bool, server: bool = False,
               dns_names: tuple[str, ...] = ()):
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
        elif dns_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in dns_names]), critical=False)
        return builder.sign(self._key, hashes.SHA256())
