"""The optional PAdES signature of the tenant on every PDF (PAdES B-B, ETSI EN 319 142-1).

The recipient's viewer shows who made the PDF and that nothing changed since. The signature is
made in the same write as the encryption: everything but the signature value (``/Contents``,
which the PDF format leaves unencrypted) is encrypted as usual. No time-stamp (B-T) yet: that
needs a time-stamping authority the gateway can reach.
"""

from __future__ import annotations

import functools
import io

import attrs
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigFieldSpec, SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore

FIELD_NAME = "Absender"


class SigningKeyInvalid(ValueError):
    """The signing certificate or key cannot be used: ``setting`` says which, the message why."""

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(message)


@attrs.frozen(kw_only=True)
class PdfSigning:
    """The tenant's signing certificate (with its chain) and key, as DER.

    Travels to the render workers with every request, like the recipient's key."""

    certificate_der: bytes
    key_der: bytes = attrs.field(repr=False)
    chain_der: tuple[bytes, ...] = ()

    @property
    def subject(self) -> str:
        return x509.load_der_x509_certificate(self.certificate_der).subject.rfc4514_string()

    @classmethod
    def load(cls, certificate_pem: bytes, key_pem: bytes,
             password: bytes | None = None) -> PdfSigning:
        """From PEM: the certificate first, then its chain; the private key (RSA or EC)."""
        try:
            certificates = x509.load_pem_x509_certificates(certificate_pem)
        except ValueError as exc:
            raise SigningKeyInvalid("signing_certificate", f"no PEM certificate ({exc})") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password)
        except (ValueError, TypeError) as exc:
            raise SigningKeyInvalid("signing_key", f"cannot read the key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningKeyInvalid("signing_key", "only RSA and EC keys can sign PDFs here")
        certificate = certificates[0]
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, public)
                != certificate.public_key().public_bytes(serialization.Encoding.DER, public)):
            raise SigningKeyInvalid("signing_key", "does not belong to the first certificate in "
                                                   "signing_certificate")
        der = serialization.Encoding.DER
        return cls(
            certificate_der=certificate.public_bytes(der),
            key_der=key.private_bytes(der, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
            chain_der=tuple(c.public_bytes(der) for c in certificates[1:]))


@functools.lru_cache(maxsize=8)
def _signer(signing: PdfSigning) -> signers.SimpleSigner:
    certificate = asn1_x509.Certificate.load(signing.certificate_der)
    chain = [asn1_x509.Certificate.load(der) for der in signing.chain_der]
    registry = SimpleCertificateStore.from_certs([certificate, *chain])  # type: ignore[no-untyped-call]
    return signers.SimpleSigner(
        signing_cert=certificate, signing_key=asn1_keys.PrivateKeyInfo.load(signing.key_der),
        cert_registry=registry)


def sign_and_serialise(writer: BasePdfFileWriter, signing: PdfSigning) -> bytes:
    """Write ``writer`` (already given its security handler) with the tenant's signature."""
    metadata = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME, md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES)
    out = signers.sign_pdf(writer, metadata, signer=_signer(signing),
                           new_field_spec=SigFieldSpec(FIELD_NAME), output=io.BytesIO())
    assert isinstance(out, io.BytesIO)
    return out.getvalue()
