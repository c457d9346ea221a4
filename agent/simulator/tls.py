"""Throwaway certificates for loopback TLS: a CA, a localhost server certificate, client certificates.

The simulator serves HTTPS (MSAL requires it) and the tests use mutual TLS. Uses ``cryptography``,
which MSAL already depends on. Keys never leave the given directory; everything is valid for a day.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Paths of a CA certificate and of a certificate it issued with its key (PEM)."""

    ca_cert: Path
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class _Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )


def _make_ca(cn: str) -> _Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(cn, _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return _Ca(key, cert)


def _issue(
    ca: _Ca, directory: Path, stem: str, cn: str, usage: x509.ObjectIdentifier, hosts: tuple[str, ...] = ()
) -> TlsFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(cn, ca.cert.subject, key.public_key())
    if hosts:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    files = TlsFiles(directory / f"{stem}-ca.pem", directory / f"{stem}.pem", directory / f"{stem}.key")
    files.ca_cert.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def make_tls(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> TlsFiles:
    """Create ``ca.pem``, ``server.pem`` and ``server.key`` in ``directory`` (server cert for ``hosts``)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = _issue(
        _make_ca("siem-agent throwaway CA"),
        directory,
        "server",
        hosts[0],
        ExtendedKeyUsageOID.SERVER_AUTH,
        hosts,
    )
    ca_cert = directory / "ca.pem"
    files.ca_cert.rename(ca_cert)
    return TlsFiles(ca_cert, files.cert, files.key)


def make_client_cert(directory: Path, cn: str = "siem-agent") -> TlsFiles:
    """Create ``client-ca.pem``, ``client.pem``, ``client.key``: a ``clientAuth`` certificate (mTLS)."""
    directory.mkdir(parents=True, exist_ok=True)
    return _issue(_make_ca("client CA"), directory, "client", cn, ExtendedKeyUsageOID.CLIENT_AUTH)
