"""Helpers of the S/MIME tests: a throwaway PKI and types for the openssl runner fixtures.

Keys are generated once per session (RSA 3072 takes about a second): a root CA (RSA 3072), an
intermediate CA (P-384) and end-entity identities with RSA 3072, RSA 2048, P-256, P-384, P-521
and brainpoolP256r1 keys. Every certificate and key is also written as PEM for openssl.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPENSSL = "/usr/bin/openssl"
NOW = dt.datetime.now(dt.UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@attrs.frozen
class Identity:
    name: str
    key: PrivateKey
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


@attrs.frozen
class Pki:
    directory: Path
    root: Identity
    intermediate: Identity
    rsa: Identity
    rsa2048: Identity
    p256: Identity
    p384: Identity
    p521: Identity
    brainpool: Identity
    root_path: Path
    """PEM file with the root certificate only (openssl -CAfile)."""
    chain_path: Path
    """PEM file with the intermediate certificate (openssl -certfile)."""

    def by_name(self, name: str) -> Identity:
        identity = getattr(self, name)
        assert isinstance(identity, Identity)
        return identity


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "siegel test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_certificate(
    *,
    subject: str,
    key: PrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: PrivateKey,
    ca: bool,
    key_usage: x509.KeyUsage,
    email: str | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def write_identity(directory: Path, name: str, key: PrivateKey, cert: x509.Certificate) -> Identity:
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Identity(name, key, cert, cert_path, key_path)


def build_pki(directory: Path) -> Pki:
    """Generate the test PKI and write its certificates and keys below ``directory``."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    root_cert = make_certificate(
        subject="siegel test root",
        key=root_key,
        issuer=None,
        issuer_key=root_key,
        ca=True,
        key_usage=key_usage(key_cert_sign=True),
    )
    root = write_identity(directory, "root", root_key, root_cert)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter_cert = make_certificate(
        subject="siegel test intermediate",
        key=inter_key,
        issuer=root_cert,
        issuer_key=root_key,
        ca=True,
        key_usage=key_usage(key_cert_sign=True),
    )
    intermediate = write_identity(directory, "intermediate", inter_key, inter_cert)

    def leaf(name: str, key: PrivateKey) -> Identity:
        usage = (
            key_usage(digital_signature=True, key_encipherment=True)
            if isinstance(key, rsa.RSAPrivateKey)
            else key_usage(digital_signature=True, key_agreement=True)
        )
        cert = make_certificate(
            subject=f"{name} user",
            key=key,
            issuer=inter_cert,
            issuer_key=inter_key,
            ca=False,
            key_usage=usage,
            email=f"{name}@behoerde.example",
            eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
        )
        return write_identity(directory, name, key, cert)

    return Pki(
        directory=directory,
        root=root,
        intermediate=intermediate,
        rsa=leaf("rsa", rsa.generate_private_key(public_exponent=65537, key_size=3072)),
        rsa2048=leaf("rsa2048", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        p256=leaf("p256", ec.generate_private_key(ec.SECP256R1())),
        p384=leaf("p384", ec.generate_private_key(ec.SECP384R1())),
        p521=leaf("p521", ec.generate_private_key(ec.SECP521R1())),
        brainpool=leaf("brainpool", ec.generate_private_key(ec.BrainpoolP256R1())),
        root_path=root.cert_path,
        chain_path=intermediate.cert_path,
    )


OpenSSL = Callable[..., bytes]
OpenSSLFails = Callable[..., subprocess.CompletedProcess[bytes]]
