"""OCSP (RFC 6960): the responders a certificate names and reading an answer - the responder's
authority, the signature (with RSASSA-PSS parameters), the nonce, the certificate covered and
freshness.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable

from asn1crypto import algos
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    SignatureAlgorithmOID,
)

from siegel import Text

from ..texts import describe, format_time
from .fetch import is_http
from .status import CLOCK_SKEW, RevocationStatus, unknown_status

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def public_key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's value, as OCSP's issuerKeyHash hashes it."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"]
    return bytes(bits.contents[1:])  # without the unused-bits octet


def hash_bytes(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _verify_signature(public_key: object, signature: bytes, data: bytes,
                      hash_algorithm: hashes.HashAlgorithm | None,
                      algorithm_oid: x509.ObjectIdentifier,
                      pss: padding.PSS | None) -> None:
    """Raise :class:`InvalidSignature` or :class:`UnsupportedAlgorithm` unless it verifies."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if hash_algorithm is None:
            raise UnsupportedAlgorithm("RSA signature without a hash algorithm")
        if algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
            if pss is None:
                raise UnsupportedAlgorithm("RSASSA-PSS without readable parameters")
            public_key.verify(signature, data, pss, hash_algorithm)
        else:
            public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if hash_algorithm is None:
            raise UnsupportedAlgorithm("ECDSA signature without a hash algorithm")
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        public_key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"signatures with {type(public_key).__name__} keys")


def _ocsp_pss(der: bytes) -> tuple[padding.PSS | None, hashes.HashAlgorithm | None]:
    """RSASSA-PSS parameters of a BasicOCSPResponse signature (cryptography does not expose them)."""
    try:
        basic = asn1_ocsp.OCSPResponse.load(der)["response_bytes"]["response"].parsed
        algorithm: algos.SignedDigestAlgorithm = basic["signature_algorithm"]
        params = algorithm["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        salt = int(params["salt_length"].native)
        return (padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash]()), salt_length=salt),
                _HASHES[hash_name]())
    except (KeyError, ValueError, TypeError, AttributeError):
        return None, None


def ocsp_urls(certificate: x509.Certificate) -> list[str]:
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return []
    return [
        description.access_location.value
        for description in access.value
        if description.access_method == AuthorityInformationAccessOID.OCSP
        and isinstance(description.access_location, x509.UniformResourceIdentifier)
        and is_http(description.access_location.value)
    ]


def read_ocsp_response(data: bytes, url: str, nonce: bytes, certificate: x509.Certificate,
                       issuer: x509.Certificate, now: dt.datetime, cache_seconds: float
                       ) -> RevocationStatus:
    """The status an OCSP answer gives, once verified (signer, signature, nonce, the
    certificate covered, freshness); ``unknown`` with the reason otherwise."""
    try:
        response = ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        return unknown_status(f"{url}: keine OCSP-Antwort ({exc})", f"{url}: not an OCSP response ({exc})")
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        status = response.response_status.name.lower()
        return unknown_status(f"{url}: Antwort „{status}“", f"{url}: responder answered {status!r}")
    signer = _ocsp_signer(response, issuer, now)
    if isinstance(signer, Text):
        return unknown_status(f"{url}: {signer.de}", f"{url}: {signer.en}")
    pss, pss_hash = _ocsp_pss(data) if (
        response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS) else (None, None)
    try:
        _verify_signature(signer.public_key(), response.signature, response.tbs_response_bytes,
                          pss_hash or response.signature_hash_algorithm,
                          response.signature_algorithm_oid, pss)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as exc:
        return unknown_status(f"{url}: Signatur der OCSP-Antwort ungültig ({type(exc).__name__})",
                        f"{url}: the OCSP response signature does not verify "
                        f"({type(exc).__name__})")
    try:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        echoed = None
    if echoed is not None and echoed != nonce:
        return unknown_status(f"{url}: OCSP-Nonce passt nicht (Wiederholung?)",
                        f"{url}: OCSP nonce does not match (replayed answer?)")
    single = _single_response(response, certificate, issuer)
    if single is None:
        return unknown_status(f"{url}: Antwort betrifft das Zertifikat nicht",
                        f"{url}: the answer does not cover the certificate")
    this_update = single.this_update_utc
    if this_update > now + CLOCK_SKEW:
        return unknown_status(f"{url}: Antwort aus der Zukunft ({format_time(this_update)[0]})",
                        f"{url}: answer from the future ({format_time(this_update)[1]})")
    next_update = single.next_update_utc
    stale = (next_update < now - CLOCK_SKEW if next_update is not None
             else this_update < now - dt.timedelta(seconds=max(cache_seconds, 300)))
    if stale:
        return unknown_status(f"{url}: Antwort veraltet (thisUpdate {format_time(this_update)[0]})",
                        f"{url}: outdated answer (thisUpdate {format_time(this_update)[1]})")
    produced_de, produced_en = format_time(response.produced_at_utc)
    detail = Text(de=f"OCSP {url} vom {produced_de}", en=f"OCSP {url} of {produced_en}")
    if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
        return RevocationStatus("good", detail)
    if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        reason = single.revocation_reason.value if single.revocation_reason else None
        assert single.revocation_time_utc is not None
        return RevocationStatus("revoked", detail, revoked_at=single.revocation_time_utc, reason=reason)
    return unknown_status(f"{url}: Status „unbekannt“ (der Dienst kennt das Zertifikat nicht)",
                    f"{url}: status 'unknown' (the responder does not know the certificate)")


def ocsp_cache_until(data: bytes, now: dt.datetime, cache_seconds: float) -> dt.datetime:
    """Until when a verified OCSP answer may be reused: ``cache_seconds``, never past its
    nextUpdate."""
    until = now + dt.timedelta(seconds=cache_seconds)
    response = ocsp.load_der_ocsp_response(data)
    if response.next_update_utc is not None:
        until = min(until, response.next_update_utc)
    return until


def _single_response(response: ocsp.OCSPResponse, certificate: x509.Certificate,
                     issuer: x509.Certificate) -> ocsp.OCSPSingleResponse | None:
    name_der = issuer.subject.public_bytes()
    key_bits = public_key_bits(issuer)
    for single in response.responses:
        if single.serial_number != certificate.serial_number:
            continue
        hash_name = single.hash_algorithm.name
        if hash_name not in _HASHES:
            continue
        if (single.issuer_key_hash == hash_bytes(hash_name, key_bits)
                and single.issuer_name_hash == hash_bytes(hash_name, name_der)):
            return single
    return None


def _ocsp_signer(response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
                 ) -> x509.Certificate | Text:
    """The certificate that may have signed the answer: the issuer itself, or a responder
    certificate in the answer that the issuer signed, with OCSPSigning, valid now."""

    def names(candidate: x509.Certificate) -> bool:
        if response.responder_name is not None:
            return candidate.subject == response.responder_name
        return response.responder_key_hash == hash_bytes("sha1", public_key_bits(candidate))

    if names(issuer):
        return issuer
    for candidate in response.certificates:
        if not names(candidate):
            continue
        subject = describe(candidate)
        try:
            candidate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return Text(de=f"Responder „{subject}“ nicht vom Aussteller „{describe(issuer)}“ "
                        "beauftragt",
                        en=f"responder \"{subject}\" is not certified by the issuer "
                        f"\"{describe(issuer)}\"")
        try:
            eku = candidate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = None
        if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            return Text(de=f"Responder „{subject}“ hat nicht den Verwendungszweck OCSPSigning",
                        en=f"responder \"{subject}\" lacks the OCSPSigning extended key usage")
        if not candidate.not_valid_before_utc <= now <= candidate.not_valid_after_utc:
            return Text(de=f"Responder-Zertifikat „{subject}“ ist nicht gültig",
                        en=f"responder certificate \"{subject}\" is not valid now")
        return candidate
    return Text(de="Antwort von einem unbekannten Responder",
                en="answer signed by an unknown responder")


__all__ = [
    "hash_bytes",
    "ocsp_cache_until",
    "ocsp_urls",
    "public_key_bits",
    "read_ocsp_response",
]
