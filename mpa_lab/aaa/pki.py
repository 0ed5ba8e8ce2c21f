"""A domain's certificates for EAP-TLS: its CA, the RADIUS server's
certificate, one client certificate per MN identity (CN = the NAI) and a CRL.

Everything is written as PEM files into one directory; private keys are
created with mode 0600 (never readable by anyone else, even for a moment).
EC P-256 keys: generated in milliseconds, and both FreeRADIUS and
wpa_supplicant accept them.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
# Clocks of the lab's hosts are the same clock; a few minutes back covers a
# certificate used the moment it is made.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """PEM paths of a certificate and its private key."""
    cert: Path
    key: Path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, from creation on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)   # an older file kept its mode through O_TRUNC


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class DomainPki:
    """A domain's CA and what it signs, in ``directory``.

    ``ca.pem`` is the CA certificate, ``crl.pem`` its CRL (rewritten by
    ``revoke``), ``ca+crl.pem`` both (what FreeRADIUS loads to check the CRL).
    """

    def __init__(self, directory: Path, domain: str, now: datetime.datetime | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = self._build(_name(f"{domain} AAA CA"), self._key.public_key(), ca=True)
        self.ca = self.directory / "ca.pem"
        self.ca.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        write_private(self.directory / "ca-key.pem", _key_pem(self._key))
        self.crl = self.directory / "crl.pem"
        self.ca_and_crl = self.directory / "ca+crl.pem"
        self._revoked: dict[int, datetime.datetime] = {}
        self._serials: dict[str, int] = {}
        self._write_crl()

    def issue(self, common_name: str, *, server: bool = False) -> Issued:
        """A certificate for ``common_name`` (the NAI of an MN, or the
        server's name), for TLS client or server authentication."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._build(_name(common_name), key.public_key(), ca=False, server=server)
        self._serials[common_name] = cert.serial_number
        stem = "server" if server else common_name.replace("/", "_")
        issued = Issued(self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(issued.key, _key_pem(key))
        return issued

    def revoke(self, common_name: str) -> None:
        """Put the certificate last issued to ``common_name`` on the CRL."""
        self._revoked[self._serials[common_name]] = self.now
        self._write_crl()

    def _write_crl(self) -> None:
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self._cert.subject)
                   .last_update(self.now - BACKDATE)
                   .next_update(self.now + VALIDITY))
        for serial, when in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(when - BACKDATE).build())
        crl = builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        self.crl.write_bytes(crl)
        self.ca_and_crl.write_bytes(self.ca.read_bytes() + crl)

    def _build(self, subject, public_key, *, ca: bool, server: bool = False):
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(subject if ca else self._cert.subject)
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - BACKDATE)
                   .not_valid_after(self.now + VALIDITY)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(self._key, hashes.SHA256())
