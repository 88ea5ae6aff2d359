"""CMS SignedData: detached S/MIME signatures (RFC 5652 5, RFC 8551 2.5).

:func:`sign` produces a detached SignedData with the signed attributes S/MIME 4.0 asks for
(contentType, signingTime, messageDigest, SMIMECapabilities), signed with RSASSA-PSS (default for
RSA keys), RSASSA-PKCS1-v1_5 on request, or ECDSA for EC keys. Verifying is in
:mod:`.verification`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import attrs
from asn1crypto import algos
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding

from . import _asn1
from .algorithms import HASHES_BY_NAME, Digest, SignaturePadding
from .capabilities import (
    OUR_CAPABILITIES,
    SmimeCapabilities,
    capabilities_attribute_der,
)
from .errors import (
    PolicyError,
    UnsupportedError,
)
from .keys import (
    SUPPORTED_CURVES,
    PrivateKey,
    certificate_der,
    issuer_and_serial_der,
    require_key_pair,
)

_SIGNED_DATA_OID = "1.2.840.113549.1.7.2"
_CONTENT_TYPE_OID = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST_OID = "1.2.840.113549.1.9.4"
_SIGNING_TIME_OID = "1.2.840.113549.1.9.5"
_VERSION_1 = b"\x02\x01\x01"  # INTEGER 1 (CMSVersion v1)



def _validate_min_rsa_bits(_instance: object, _attribute: object, value: int) -> None:
    if value < 2048:
        raise PolicyError(
            f"min_rsa_bits={value} is below 2048, which no policy may allow",
            where="SignOptions.min_rsa_bits",
        )


@attrs.frozen(kw_only=True)
class SignOptions:
    """How :func:`sign` signs."""

    digest: Digest = Digest.SHA256
    rsa_padding: SignaturePadding = SignaturePadding.RSASSA_PSS
    """Signature scheme for RSA keys; ignored for EC keys (ECDSA)."""
    capabilities: SmimeCapabilities | None = OUR_CAPABILITIES
    """Announced in the SMIMECapabilities signed attribute; None leaves the attribute out."""
    min_rsa_bits: int = attrs.field(default=3000, validator=_validate_min_rsa_bits)
    """Smallest RSA signer key accepted; BSI TR-02102-1 asks for 3000 bits."""




def sign(
    content: bytes,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    options: SignOptions | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """Sign ``content`` (the exact bytes, e.g. a canonical CRLF MIME entity); returns DER.

    The result is a ContentInfo with a detached SignedData, carrying ``certificate`` and
    ``chain`` (intermediates; leave out the root) so the recipient can build the path.
    ``signing_time`` defaults to now.

    Raises :class:`KeyMismatchError`, :class:`PolicyError` (RSA key below
    ``options.min_rsa_bits``) or :class:`UnsupportedError` (curve or key type).
    """
    options = options or SignOptions()
    _check_signer_key(private_key, certificate, options)
    digest = options.digest
    when = signing_time or dt.datetime.now(dt.UTC)
    message_digest = hashlib.new(digest.asn1_name, content).digest()
    # The DER is assembled here rather than with asn1crypto objects (see _asn1): the constant
    # parts are encoded once, certificates and IssuerAndSerialNumber once per certificate.
    attributes = [
        _attribute(_CONTENT_TYPE_OID, _asn1.der_oid(_asn1.ID_DATA_OID)),
        _attribute(_SIGNING_TIME_OID, _cms_time(when)),
        _attribute(_MESSAGE_DIGEST_OID, _asn1.der_octet_string(message_digest)),
    ]
    if options.capabilities is not None:
        attributes.append(capabilities_attribute_der(options.capabilities))
    # DER SET OF: the attributes sorted by their encoding. The signature covers the SET OF; the
    # SignerInfo carries the same contents as [0] IMPLICIT.
    attributes_contents = b"".join(sorted(attributes))
    to_be_signed = _asn1.der_tlv(_asn1.TAG_SET, attributes_contents)
    signature_algorithm, signature = _sign_bytes(private_key, to_be_signed, digest, options)
    digest_algorithm = _digest_algorithm_der(digest.asn1_name)
    signer_info = _asn1.der_sequence(
        _VERSION_1,
        issuer_and_serial_der(certificate),
        digest_algorithm,
        _asn1.der_tlv(_asn1.context_tag(0), attributes_contents),
        signature_algorithm,
        _asn1.der_octet_string(signature),
    )
    certificates = [certificate_der(certificate), *(certificate_der(extra) for extra in chain)]
    signed_data = _asn1.der_sequence(
        _VERSION_1,
        _asn1.der_set_of([digest_algorithm]),
        _asn1.der_sequence(_asn1.der_oid(_asn1.ID_DATA_OID)),  # detached: no eContent
        _asn1.der_tlv(_asn1.context_tag(0), *sorted(certificates)),  # [0] IMPLICIT SET OF
        _asn1.der_set_of([signer_info]),
    )
    return _asn1.der_sequence(
        _asn1.der_oid(_SIGNED_DATA_OID), _asn1.der_tlv(_asn1.context_tag(0), signed_data)
    )




# --- signing helpers -----------------------------------------------------------------------------


def _check_signer_key(
    private_key: PrivateKey, certificate: x509.Certificate, options: SignOptions
) -> None:
    require_key_pair(private_key, certificate, "signing")
    if isinstance(private_key, rsa.RSAPrivateKey):
        if private_key.key_size < options.min_rsa_bits:
            raise PolicyError(
                f"the signing key has {private_key.key_size} bits; at least "
                f"{options.min_rsa_bits} are required (BSI TR-02102-1)",
                where="sign(private_key)",
            )
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.name not in SUPPORTED_CURVES:
            raise UnsupportedError(
                f"curve {private_key.curve.name} is not supported; use one of "
                f"{', '.join(SUPPORTED_CURVES)}",
                where="sign(private_key)",
            )
    else:  # pragma: no cover - excluded by the type, kept for untyped callers
        raise UnsupportedError(
            f"{type(private_key).__name__} cannot sign S/MIME", where="sign(private_key)"
        )


def _sign_bytes(
    private_key: PrivateKey, data: bytes, digest: Digest, options: SignOptions
) -> tuple[bytes, bytes]:
    """The signature of ``data`` and the DER of its signatureAlgorithm."""
    hash_algorithm = digest.hash()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return (
            _signature_algorithm_der("ecdsa", digest.asn1_name),
            private_key.sign(data, ec.ECDSA(hash_algorithm)),
        )
    if options.rsa_padding is SignaturePadding.RSASSA_PSS:
        salt_length = hash_algorithm.digest_size
        pss = asym_padding.PSS(mgf=asym_padding.MGF1(hash_algorithm), salt_length=salt_length)
        return (
            _signature_algorithm_der("rsassa_pss", digest.asn1_name),
            private_key.sign(data, pss, hash_algorithm),
        )
    return (
        _signature_algorithm_der("rsassa_pkcs1v15", digest.asn1_name),
        private_key.sign(data, asym_padding.PKCS1v15(), hash_algorithm),
    )


@functools.cache
def _signature_algorithm_der(scheme: str, digest_name: str) -> bytes:
    """signatureAlgorithm of a SignerInfo: ECDSA, RSASSA-PSS (MGF1 with the message digest, salt
    as long as the digest) or RSASSA-PKCS1-v1_5."""
    algorithm: dict[str, Any]
    if scheme == "ecdsa":
        algorithm = {"algorithm": f"{digest_name}_ecdsa"}
    elif scheme == "rsassa_pss":
        parameters = {
            "hash_algorithm": {"algorithm": digest_name},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest_name}},
            "salt_length": HASHES_BY_NAME[digest_name].digest_size,
        }
        algorithm = {"algorithm": "rsassa_pss", "parameters": parameters}
    else:
        algorithm = {"algorithm": f"{digest_name}_rsa"}
    return _asn1.der(algos.SignedDigestAlgorithm(algorithm))


@functools.cache
def _digest_algorithm_der(digest_name: str) -> bytes:
    return _asn1.der(algos.DigestAlgorithm({"algorithm": digest_name}))


def _attribute(oid: str, value: bytes) -> bytes:
    """A CMS Attribute with the single (DER-encoded) ``value``."""
    return _asn1.der_sequence(_asn1.der_oid(oid), _asn1.der_tlv(_asn1.TAG_SET, value))


def _cms_time(when: dt.datetime) -> bytes:
    """RFC 5652 11.3: UTCTime for 1950-2049, GeneralizedTime otherwise (DER, whole seconds)."""
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if 1950 <= when.year < 2050:
        return _asn1.der_tlv(_asn1.TAG_UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return _asn1.der_tlv(
        _asn1.TAG_GENERALIZED_TIME, (when.strftime("%Y%m%d%H%M%S") + "Z").encode("ascii")
    )




__all__ = ["SignOptions", "sign"]
