"""Verifying CMS SignedData (RFC 5652 5, RFC 8551 2.5): :func:`verify` checks the signature math,
the signed attributes against the content, and builds the certificate chain to the given trust
anchors with `cryptography`'s RFC 5280 path validation (validity at ``at``, CA flags, path length,
key usage, extended key usage emailProtection).

Revocation (CRL/OCSP) is not checked here; callers that need it check ``chain`` themselves.
Limitation of that path validation: CA certificates must have RSA (>= 2048 bits) or NIST-curve
keys; a brainpool *CA* key is refused ("Forbidden public key algorithm"), and every certificate
must be X.509 v3 and SHA-2 signed. Brainpool end-entity keys are fine.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import attrs
from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.x509 import verification as x509_verification
from cryptography.x509.oid import NameOID

from . import _asn1
from .algorithms import HASHES_BY_NAME
from .capabilities import SmimeCapabilities, parse_capabilities
from .errors import (
    ChainValidationError,
    MalformedError,
    PolicyError,
    SignatureMismatchError,
    SmimeError,
    UnsupportedError,
    VerificationError,
)
from .keys import issuer_name_and_serial, names_equal
from .pki import validate_path

_ACCEPTED_DIGESTS = ("sha224", "sha256", "sha384", "sha512")
_MIN_VERIFY_RSA_BITS = 2048


# signatureAlgorithm OIDs -> (scheme, hash name or None when the digestAlgorithm decides)
_SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsassa_pkcs1v15", None),  # rsaEncryption
    "1.2.840.113549.1.1.14": ("rsassa_pkcs1v15", "sha224"),
    "1.2.840.113549.1.1.11": ("rsassa_pkcs1v15", "sha256"),
    "1.2.840.113549.1.1.12": ("rsassa_pkcs1v15", "sha384"),
    "1.2.840.113549.1.1.13": ("rsassa_pkcs1v15", "sha512"),
    "1.2.840.113549.1.1.10": ("rsassa_pss", None),  # hash from RSASSA-PSS-params
    "1.2.840.10045.2.1": ("ecdsa", None),  # id-ecPublicKey, used by some signers
    "1.2.840.10045.4.3.1": ("ecdsa", "sha224"),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
}
_WEAK_SIGNATURE_ALGORITHMS = {
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
}


@attrs.frozen(kw_only=True)
class VerifiedSignature:
    """A signature that verified, and what it says about the signer."""

    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    """The validated path: signer first, trust anchor last."""
    signing_time: dt.datetime | None
    """The signingTime attribute (timezone-aware UTC); None when the signer left it out.
    It is the signer's claim, not a trusted time stamp."""
    capabilities: SmimeCapabilities
    """The signer's SMIMECapabilities; empty when not announced or unreadable."""
    digest: str
    """Digest algorithm of the signature, e.g. ``sha256``."""
    signature_algorithm: str
    """``rsassa_pss``, ``rsassa_pkcs1v15`` or ``ecdsa``."""
    signer_emails: tuple[str, ...]
    """E-mail addresses of the signer certificate (subjectAltName rfc822Name, then the
    subject's emailAddress), for comparing with the From header."""
    content: bytes = attrs.field(repr=False)
    """The signed content (the detached content given, or the encapsulated one)."""


def verify(
    signature: bytes,
    content: bytes | None,
    trust_roots: Sequence[x509.Certificate],
    *,
    at: dt.datetime | None = None,
) -> VerifiedSignature:
    """Verify a SignedData (DER) over ``content`` and the signer's chain to ``trust_roots``.

    ``content`` is the detached content (for multipart/signed: the first body part, canonical
    CRLF); pass None for a SignedData that encapsulates its content. ``at`` is the time the
    certificates must be valid at, default now.

    With several SignerInfos the first that verifies completely is returned. Raises
    :class:`SignatureMismatchError` (content or signature changed), :class:`ChainValidationError`
    (signer not trusted at ``at``), :class:`PolicyError` (SHA-1, short RSA key),
    :class:`MalformedError` or :class:`UnsupportedError`; all derive from
    :class:`VerificationError` or :class:`SmimeError`.
    """
    if not trust_roots:
        raise ValueError("verify() needs at least one trust root certificate")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    signed_data = _load_signed_data(signature)
    try:
        content_bytes = _signed_content(signed_data, content)
        content_type = _asn1.dotted(signed_data["encap_content_info"]["content_type"])
        certificates = _certificates(signed_data)
        signer_infos = list(signed_data["signer_infos"])
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedError(f"unreadable structure: {exc}", where="SignedData") from None
    if not signer_infos:
        raise MalformedError("there is no SignerInfo", where="SignedData.signerInfos")
    errors: list[SmimeError] = []
    for index, signer_info in enumerate(signer_infos):
        where = f"SignedData.signerInfos[{index}]"
        try:
            return _verify_signer(
                signer_info, content_bytes, content_type, certificates, trust_roots, when, where
            )
        except SmimeError as exc:
            errors.append(exc)
        except (ValueError, TypeError, KeyError) as exc:
            errors.append(MalformedError(f"unreadable SignerInfo: {exc}", where=where))
    if len(errors) == 1:
        raise errors[0]
    first = errors[0]
    raise type(first)(
        "no SignerInfo verified: " + "; ".join(str(error) for error in errors),
        where="SignedData.signerInfos",
    )


# --- verification helpers ------------------------------------------------------------------------


def _load_signed_data(der: bytes) -> Any:
    try:
        info = cms.ContentInfo.load(der)
        content_type = info["content_type"].native
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a DER CMS ContentInfo: {exc}", where="ContentInfo") from None
    if content_type != "signed_data":
        raise UnsupportedError(
            f"content type {info['content_type'].dotted} ({content_type}) is not SignedData",
            where="ContentInfo.contentType",
        )
    return info["content"]


def _signed_content(signed_data: Any, detached: bytes | None) -> bytes:
    encapsulated = signed_data["encap_content_info"]["content"]
    has_encapsulated = not isinstance(encapsulated, core.Void)
    if detached is not None and has_encapsulated:
        raise MalformedError(
            "the SignedData encapsulates its content, but detached content was given too",
            where="SignedData.encapContentInfo.eContent",
        )
    if detached is not None:
        return detached
    if not has_encapsulated:
        raise MalformedError(
            "the signature is detached; pass the signed content (the first part of the "
            "multipart/signed entity)",
            where="SignedData.encapContentInfo.eContent",
        )
    native = encapsulated.native
    if not isinstance(native, bytes):
        raise UnsupportedError(
            "only id-data content can be verified; this SignedData encapsulates "
            f"{signed_data['encap_content_info']['content_type'].native}",
            where="SignedData.encapContentInfo",
        )
    return native


def _certificates(signed_data: Any) -> list[x509.Certificate]:
    result = []
    certificates = signed_data["certificates"]
    if isinstance(certificates, core.Void):
        return []
    for choice in certificates:
        if choice.name == "certificate":
            result.append(x509.load_der_x509_certificate(_asn1.der(choice.chosen)))
    return result


def _verify_signer(
    signer_info: Any,
    content: bytes,
    content_type: str,
    certificates: list[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    when: dt.datetime,
    where: str,
) -> VerifiedSignature:
    signer = _find_signer(signer_info["sid"], certificates, where)
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    _check_digest_name(digest_name, f"{where}.digestAlgorithm")
    content_digest = hashlib.new(digest_name, content).digest()

    signed_attrs = signer_info["signed_attrs"]
    signing_time: dt.datetime | None = None
    capabilities = SmimeCapabilities()
    if isinstance(signed_attrs, core.Void):
        to_be_verified = content  # RFC 5652 5.4: without attributes the content is signed
    else:
        attributes = _attributes_by_type(signed_attrs, f"{where}.signedAttrs")
        _check_content_type(attributes, content_type, where)
        _check_message_digest(attributes, content_digest, where)
        signing_time = _signing_time(attributes, where)
        capabilities = _capabilities(attributes)
        # The signature covers the DER SET OF, not the [0] IMPLICIT field as transmitted.
        to_be_verified = b"\x31" + _asn1.der(signed_attrs)[1:]

    scheme = _verify_signature_value(signer_info, signer, to_be_verified, digest_name, where)
    chain = _validate_chain(signer, certificates, trust_roots, when, where)
    return VerifiedSignature(
        signer=signer,
        chain=chain,
        signing_time=signing_time,
        capabilities=capabilities,
        digest=digest_name,
        signature_algorithm=scheme,
        signer_emails=_emails(signer),
        content=content,
    )


def _find_signer(sid: Any, certificates: list[x509.Certificate], where: str) -> x509.Certificate:
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            issuer, serial = issuer_name_and_serial(certificate)
            if (
                names_equal(_asn1.der(sid.chosen["issuer"]), issuer)
                and _asn1.as_int(sid.chosen["serial_number"]) == serial
            ):
                return certificate
        elif sid.name == "subject_key_identifier":
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == _asn1.as_bytes(sid.chosen):
                return certificate
    if sid.name == "issuer_and_serial_number":
        described = (
            f"issuer {sid.chosen['issuer'].human_friendly}, serial "
            f"{_asn1.as_int(sid.chosen['serial_number']):#x}"
        )
    else:
        described = f"subject key identifier {_asn1.as_bytes(sid.chosen).hex()}"
    raise VerificationError(
        f"the signer certificate ({described}) is not included in the signature; "
        "this library only verifies signatures that carry their signer certificate",
        where=f"{where}.sid",
    )


def _check_digest_name(name: str, where: str) -> None:
    if name in ("md5", "sha1"):
        raise PolicyError(
            f"{name} signatures are refused (BSI TR-02102-1); the sender must use SHA-2",
            where=where,
        )
    if name not in _ACCEPTED_DIGESTS:
        raise UnsupportedError(f"digest algorithm {name} is not supported", where=where)


def _attributes_by_type(attributes: Any, where: str) -> dict[str, list[Any]]:
    result: dict[str, list[Any]] = {}
    for attribute in attributes:
        oid = _asn1.dotted(attribute["type"])
        if oid in result:
            raise MalformedError(f"attribute {oid} appears twice", where=where)
        result[oid] = list(attribute["values"])
    return result


def _single(attributes: dict[str, list[Any]], oid: str, name: str, where: str) -> Any:
    values = attributes.get(oid)
    if values is None:
        raise MalformedError(f"the {name} attribute is missing", where=f"{where}.signedAttrs")
    if len(values) != 1:
        raise MalformedError(
            f"the {name} attribute must have exactly one value, has {len(values)}",
            where=f"{where}.signedAttrs",
        )
    return values[0]


def _check_content_type(attributes: dict[str, list[Any]], content_type: str, where: str) -> None:
    value = _single(attributes, "1.2.840.113549.1.9.3", "contentType", where)
    if _asn1.dotted(value) != content_type:
        raise SignatureMismatchError(
            f"the signed contentType {_asn1.dotted(value)} differs from the encapsulated "
            f"content type {content_type}",
            where=f"{where}.signedAttrs.contentType",
        )


def _check_message_digest(
    attributes: dict[str, list[Any]], content_digest: bytes, where: str
) -> None:
    value = _asn1.as_bytes(_single(attributes, "1.2.840.113549.1.9.4", "messageDigest", where))
    if not hmac.compare_digest(value, content_digest):
        raise SignatureMismatchError(
            "the content does not match the signed message digest: the message was changed "
            "after signing (or line endings were not canonical CRLF)",
            where=f"{where}.signedAttrs.messageDigest",
        )


def _signing_time(attributes: dict[str, list[Any]], where: str) -> dt.datetime | None:
    if "1.2.840.113549.1.9.5" not in attributes:
        return None
    value = _single(attributes, "1.2.840.113549.1.9.5", "signingTime", where).native
    if not isinstance(value, dt.datetime):
        raise MalformedError("signingTime is not a time", where=f"{where}.signedAttrs")
    return value.astimezone(dt.UTC)


def _capabilities(attributes: dict[str, list[Any]]) -> SmimeCapabilities:
    values = attributes.get("1.2.840.113549.1.9.15")
    if not values:
        return SmimeCapabilities()
    try:
        return parse_capabilities(_asn1.der(values[0]))
    except MalformedError:
        # An unreadable announcement does not make a correct signature wrong; the sender then
        # counts as announcing nothing and gets the fallback cipher.
        return SmimeCapabilities()


def _verify_signature_value(
    signer_info: Any,
    signer: x509.Certificate,
    data: bytes,
    digest_name: str,
    where: str,
) -> str:
    algorithm = signer_info["signature_algorithm"]
    oid = _asn1.dotted(algorithm["algorithm"])
    alg_where = f"{where}.signatureAlgorithm"
    if oid in _WEAK_SIGNATURE_ALGORITHMS:
        raise PolicyError(
            f"{_WEAK_SIGNATURE_ALGORITHMS[oid]} signatures are refused (BSI TR-02102-1)",
            where=alg_where,
        )
    if oid not in _SIGNATURE_ALGORITHMS:
        raise UnsupportedError(f"signature algorithm {oid} is not supported", where=alg_where)
    scheme, hash_name = _SIGNATURE_ALGORITHMS[oid]
    hash_name = hash_name or digest_name
    public_key = signer.public_key()
    signature = _asn1.as_bytes(signer_info["signature"])
    subject = signer.subject.rfc4514_string()
    try:
        if scheme == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise SignatureMismatchError(
                    f"ECDSA signature, but the signer {subject} has no EC key", where=alg_where
                )
            public_key.verify(signature, data, ec.ECDSA(HASHES_BY_NAME[hash_name]()))
            return scheme
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureMismatchError(
                f"RSA signature, but the signer {subject} has no RSA key", where=alg_where
            )
        if public_key.key_size < _MIN_VERIFY_RSA_BITS:
            raise PolicyError(
                f"the signer {subject} has a {public_key.key_size}-bit RSA key; below "
                f"{_MIN_VERIFY_RSA_BITS} bits signatures are refused",
                where=alg_where,
            )
        if scheme == "rsassa_pss":
            pss, pss_hash = _pss_padding(algorithm["parameters"], alg_where)
            public_key.verify(signature, data, pss, pss_hash)
        else:
            public_key.verify(signature, data, asym_padding.PKCS1v15(), HASHES_BY_NAME[hash_name]())
    except InvalidSignature:
        raise SignatureMismatchError(
            f"the signature of {subject} does not verify: the signed attributes or the "
            "signature were changed",
            where=f"{where}.signature",
        ) from None
    return scheme


def _pss_padding(parameters: Any, where: str) -> tuple[asym_padding.PSS, hashes.HashAlgorithm]:
    if _asn1.is_absent(parameters):
        raise MalformedError("RSASSA-PSS without parameters", where=where)
    return _pss_padding_for(_asn1.der(parameters), where)


@functools.lru_cache(maxsize=64)
def _pss_padding_for(der: bytes, where: str) -> tuple[asym_padding.PSS, hashes.HashAlgorithm]:
    """:func:`_pss_padding` by the DER of RSASSA-PSS-params, which senders keep the same."""
    params = algos.RSASSAPSSParams.load(der)
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise UnsupportedError(
            f"PSS mask generation {mgf['algorithm'].dotted} is not supported", where=where
        )
    mgf_hash_name = mgf["parameters"]["algorithm"].native
    for name in (hash_name, mgf_hash_name):
        _check_digest_name(name, where)
    if params["trailer_field"].native not in (1, "trailer_field_bc"):
        raise UnsupportedError("PSS trailer field other than 1 (0xBC)", where=where)
    pss = asym_padding.PSS(
        mgf=asym_padding.MGF1(HASHES_BY_NAME[mgf_hash_name]()),
        salt_length=_asn1.as_int(params["salt_length"]),
    )
    return pss, HASHES_BY_NAME[hash_name]()


def _validate_chain(
    signer: x509.Certificate,
    certificates: list[x509.Certificate],
    trust_roots: Sequence[x509.Certificate],
    when: dt.datetime,
    where: str,
) -> tuple[x509.Certificate, ...]:
    intermediates = [cert for cert in certificates if cert != signer]
    try:
        return validate_path(signer, intermediates, trust_roots, when, "signing")
    except x509_verification.VerificationError as exc:
        raise ChainValidationError(
            f"the signer {signer.subject.rfc4514_string()} (serial {signer.serial_number:#x}, "
            f"issuer {signer.issuer.rfc4514_string()}) does not chain to a trust root at "
            f"{when.isoformat()}: {exc}",
            where=f"{where}.sid",
        ) from None


def _emails(certificate: x509.Certificate) -> tuple[str, ...]:
    emails: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        emails.extend(san.value.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        value = attribute.value
        if isinstance(value, str) and value not in emails:
            emails.append(value)
    return tuple(emails)


__all__ = ["VerifiedSignature", "verify"]
