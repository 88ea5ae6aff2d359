"""Reading certificates from files: PEM, DER, PKCS#7 certs-only bundles and PKCS#12 (private keys
in them are ignored), and trust anchors from PEM or DER files.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path

import attrs
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from .certificates import is_ca
from .texts import describe


class ImportFailure(ValueError):
    """A file could not be read as certificates; the message names the file and says why."""


@attrs.frozen(kw_only=True)
class LoadedCertificates:
    certificates: tuple[x509.Certificate, ...]
    #: What was in the file but not taken (private keys, unknown PEM blocks).
    notes: tuple[str, ...] = ()


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _pem_body(body: bytes, label: str, name: str) -> bytes:
    lines = [line.strip() for line in body.splitlines()]
    if any(b":" in line for line in lines):
        raise ImportFailure(f"{name}: encrypted or annotated PEM block {label} is not supported")
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise ImportFailure(f"{name}: PEM block {label} is not valid base64") from None


def _pkcs7(der: bytes, name: str) -> list[x509.Certificate]:
    try:
        return list(pkcs7.load_der_pkcs7_certificates(der))
    except ValueError as exc:
        raise ImportFailure(f"{name}: unreadable PKCS#7 bundle: {exc}") from None


def _is_pfx(data: bytes) -> bool:
    try:
        return bool(asn1_pkcs12.Pfx.load(data)["version"].native == "v3")
    except (ValueError, TypeError, KeyError):
        return False


def _pkcs12(data: bytes, name: str, password: bytes | None) -> LoadedCertificates:
    attempts = [password] if password is not None else [None, b""]
    last_error: Exception | None = None
    for attempt in attempts:
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
        except (ValueError, TypeError) as exc:
            last_error = exc
            continue
        certificates = ([bundle.cert.certificate] if bundle.cert is not None else []) + [
            extra.certificate for extra in bundle.additional_certs]
        notes = (f"{name}: the private key was not imported (siegel needs only certificates of "
                 "recipients)",) if bundle.key is not None else ()
        if not certificates:
            raise ImportFailure(f"{name}: the PKCS#12 file holds no certificate")
        return LoadedCertificates(certificates=tuple(certificates), notes=notes)
    hint = "wrong password" if password is not None else "it needs a password (--password-file)"
    raise ImportFailure(f"{name}: PKCS#12 file cannot be opened: {hint} ({last_error})")


def load_certificates(data: bytes, *, name: str, password: bytes | None = None
                      ) -> LoadedCertificates:
    """Read certificates from PEM (certificates and PKCS#7/CMS blocks), DER, PKCS#7 certs-only
    (DER) or PKCS#12 (with ``password`` if it has one). Raises :class:`ImportFailure`."""
    if b"-----BEGIN " in data:
        certificates: list[x509.Certificate] = []
        notes: list[str] = []
        for raw_label, body in _PEM_BLOCK.findall(data):
            label = raw_label.decode("ascii")
            if "PRIVATE KEY" in label:
                notes.append(f"{name}: a private key was not imported (siegel needs only "
                             "certificates of recipients)")
                continue
            if label not in ("CERTIFICATE", "X509 CERTIFICATE", "PKCS7", "CMS"):
                notes.append(f"{name}: PEM block {label} skipped")
                continue
            der = _pem_body(body, label, name)
            if label in ("PKCS7", "CMS"):
                certificates += _pkcs7(der, name)
                continue
            try:
                certificates.append(x509.load_der_x509_certificate(der))
            except ValueError as exc:
                raise ImportFailure(f"{name}: certificate {len(certificates) + 1} does not parse: "
                                    f"{exc}") from None
        if not certificates:
            raise ImportFailure(f"{name}: no certificate in this PEM file")
        return LoadedCertificates(certificates=tuple(certificates), notes=tuple(notes))
    try:
        return LoadedCertificates(certificates=(x509.load_der_x509_certificate(data),))
    except ValueError:
        pass
    try:
        return LoadedCertificates(certificates=tuple(pkcs7.load_der_pkcs7_certificates(data)))
    except ValueError:
        pass
    if _is_pfx(data):
        return _pkcs12(data, name, password)
    raise ImportFailure(f"{name}: not a certificate file (PEM, DER, PKCS#7 or PKCS#12)")


def load_anchor_file(path: str | os.PathLike[str]) -> tuple[x509.Certificate, ...]:
    """Trust anchors from a PEM file (one or more certificates) or a DER certificate.

    Raises :class:`ValueError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    try:
        loaded = load_certificates(data, name=str(path))
    except ImportFailure as exc:
        raise ValueError(str(exc)) from None
    for certificate in loaded.certificates:
        if not is_ca(certificate):
            raise ValueError(f"{path}: {describe(certificate)} is not a CA certificate "
                             "(no basicConstraints with cA true); it cannot be a trust anchor")
    return loaded.certificates


__all__ = [
    "ImportFailure",
    "LoadedCertificates",
    "load_anchor_file",
    "load_certificates",
]
