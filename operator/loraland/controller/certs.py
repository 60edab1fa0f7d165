"""A self-signed CA and a serving certificate for the admission webhook.

Kopf can generate one itself, but only with ``certbuilder``/``oscrypto``, which do not
work with OpenSSL 3; this does the same with ``cryptography``. The CA signs one server
certificate for the given DNS names and IPs; the API server trusts the CA through the
webhook configuration's ``caBundle``, which Kopf patches in.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The files a certificate directory holds (the names a kubernetes.io/tls Secret uses).
CERT_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path

    @classmethod
    def in_dir(cls, directory: Path) -> CertFiles:
        return cls(directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def self_signed(
    hosts: Iterable[str], *, days: int = 3650, now: datetime.datetime | None = None
) -> tuple[bytes, bytes, bytes]:
    """(server cert PEM, server key PEM, CA cert PEM) for ``hosts`` (names or IPs)."""
    hosts = list(hosts)
    if not hosts:
        raise ValueError("a webhook certificate needs at least one host name or IP")
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    end = start + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loraland webhook CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem), _pem_key(key), ca.public_bytes(pem)


def write_self_signed(directory: Path, hosts: Iterable[str]) -> CertFiles:
    """Generate and write tls.crt, tls.key (mode 0600) and ca.crt into ``directory``."""
    cert, key, ca = self_signed(hosts)
    files = CertFiles.in_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files.cert.write_bytes(cert)
    files.key.touch(mode=0o600)
    files.key.write_bytes(key)
    files.ca.write_bytes(ca)
    return files
