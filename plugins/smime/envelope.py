"""Encryption and decryption of CMS enveloped content (RFC 5652, RFC 5083/5084, RFC 5753).

:func:`encrypt` produces a DER ``ContentInfo`` holding

* ``AuthEnvelopedData`` with AES-GCM (default; integrity protected, S/MIME 4.0), or
* ``EnvelopedData`` with AES-CBC for recipients that cannot decrypt GCM,

and one RecipientInfo per recipient certificate:

* RSA: ``KeyTransRecipientInfo`` with RSAES-OAEP/SHA-256 (default) or RSAES-PKCS1-v1_5,
* EC (P-256/384/521, brainpoolP256/384/512r1): ``KeyAgreeRecipientInfo`` with an ephemeral-static
  ECDH key, ``dhSinglePass-stdDH-sha256kdf-scheme`` (X9.63 KDF, RFC 5753) and AES-256 key wrap.

:func:`decrypt` / :func:`open_envelope` read both content types with the RecipientInfo variants
mainstream clients (OpenSSL, Thunderbird/NSS, Outlook, BouncyCastle) produce.

This module assembles and opens the envelope; the key management and the content cipher live
apart: :mod:`.key_transport` (RSA), :mod:`.key_agreement` (ECDH) and :mod:`.content_encryption`
(AES-GCM and the CBC ciphers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import _asn1
from ._asn1 import VERSION_0, VERSION_2
from .algorithms import (
    ContentCipher,
    Digest,
    RsaKeyTransport,
)
from .content_encryption import (
    CIPHER_NAMES,
    GCM_NONCE_BYTES,
    GCM_TAG_BYTES,
    aesgcm_encrypt,
    content_key_bytes,
    decrypt_cbc,
    decrypt_gcm,
)
from .errors import (
    CertificateError,
    MalformedError,
    NoMatchingRecipientError,
    PolicyError,
    UnsupportedError,
)
from .key_agreement import key_agreement_info, unwrap_key_agreement
from .key_transport import key_transport_info, unwrap_key_transport
from .keys import (
    SUPPORTED_CURVES,
    PrivateKey,
    issuer_name_and_serial,
    names_equal,
    require_key_pair,
)

_AUTH_ENVELOPED_DATA_OID = "1.2.840.113549.1.9.16.1.23"
_ENVELOPED_DATA_OID = "1.2.840.113549.1.7.3"


def _validate_min_rsa_bits(_instance: object, _attribute: object, value: int) -> None:
    if value < 2048:
        raise PolicyError(
            f"min_rsa_bits={value} is below 2048, which no policy may allow",
            where="EncryptOptions.min_rsa_bits",
        )


@attrs.frozen(kw_only=True)
class EncryptOptions:
    """How :func:`encrypt` protects content. Weak choices need an explicit allow flag.

    Refusals happen when the options are created, so a bad configuration fails at start-up,
    not at the first message:

    >>> EncryptOptions(content_cipher=ContentCipher.AES128_GCM)
    Traceback (most recent call last):
    ...
    siegel.plugins.smime.errors.PolicyError: EncryptOptions.content_cipher: ...
    """

    content_cipher: ContentCipher = ContentCipher.AES256_GCM
    """AES-256-GCM (AuthEnvelopedData) by default; AES-256-CBC produces EnvelopedData."""
    rsa_key_transport: RsaKeyTransport = RsaKeyTransport.RSAES_OAEP_SHA256
    """Key transport for RSA recipients."""
    ecdh_kdf_digest: Digest = Digest.SHA256
    """Hash of the X9.63 KDF for EC recipients (dhSinglePass-stdDH-shaXXXkdf-scheme)."""
    allow_aes128: bool = False
    """Permit the AES-128 content ciphers."""
    allow_rsa_pkcs1v15: bool = False
    """Permit RSAES-PKCS1-v1_5 key transport (legacy recipients only)."""
    min_rsa_bits: int = attrs.field(default=3000, validator=_validate_min_rsa_bits)
    """Smallest RSA recipient key accepted; BSI TR-02102-1 asks for 3000 bits."""

    def __attrs_post_init__(self) -> None:
        if self.content_cipher.key_bytes < 32 and not self.allow_aes128:
            raise PolicyError(
                f"{self.content_cipher.name} is refused; use AES-256 or set allow_aes128=True",
                where="EncryptOptions.content_cipher",
            )
        if self.rsa_key_transport is RsaKeyTransport.RSAES_PKCS1_V15 and not (
            self.allow_rsa_pkcs1v15
        ):
            raise PolicyError(
                "RSAES-PKCS1-v1_5 key transport is refused; use RSAES-OAEP or set "
                "allow_rsa_pkcs1v15=True",
                where="EncryptOptions.rsa_key_transport",
            )


@attrs.frozen(kw_only=True)
class DecryptedEnvelope:
    """The result of :func:`open_envelope`: the content and how it was protected."""

    content: bytes = attrs.field(repr=False)
    content_type: str
    """Dotted OID of the decrypted content; ``1.2.840.113549.1.7.1`` (id-data) for S/MIME."""
    content_cipher: str
    """Readable content cipher, e.g. ``aes256-GCM``."""
    authenticated: bool
    """True for AuthEnvelopedData (AES-GCM): the content is integrity protected."""
    key_management: str
    """How our key was reached, e.g. ``ktri rsaesOaep(sha256)`` or
    ``kari dhSinglePass-stdDH-sha256kdf aes256-wrap``; for audit logs."""


def encrypt(
    content: bytes,
    recipients: Sequence[x509.Certificate],
    *,
    options: EncryptOptions | None = None,
) -> bytes:
    """Encrypt ``content`` for ``recipients``; returns the DER of a CMS ContentInfo.

    The caller is responsible for having validated the recipient certificates (chain,
    revocation, e-mail address). This function only refuses certificates whose key cannot be
    used: RSA below ``options.min_rsa_bits``, unsupported curves, or a key-usage extension that
    forbids key encipherment (RSA) / key agreement (EC).

    Raises :class:`PolicyError`, :class:`CertificateError` or :class:`ValueError` (no recipients).
    """
    options = options or EncryptOptions()
    if not recipients:
        raise ValueError("encrypt() needs at least one recipient certificate")
    cipher = options.content_cipher
    cek = os.urandom(cipher.key_bytes)
    recipient_infos = [
        _recipient_info(cert, cek, options, where=f"recipients[{index}]")
        for index, cert in enumerate(recipients)
    ]
    # The DER is assembled from pieces (see _asn1) and joined once at the end, so the (possibly
    # large) ciphertext is copied only once more.
    recipient_info_set = _asn1.der_set_of(der for _kind, der in recipient_infos)
    if cipher.authenticated:
        nonce = os.urandom(GCM_NONCE_BYTES)
        ciphertext, tag = aesgcm_encrypt(cek, nonce, content)
        # GCMParameters: aes-nonce, aes-ICVlen (16, not the DEFAULT 12, so it is encoded)
        parameters = _asn1.der_sequence(
            _asn1.der_octet_string(nonce), _asn1.der_integer(GCM_TAG_BYTES)
        )
        body = [
            VERSION_0,
            recipient_info_set,
            *_encrypted_content_info(cipher.oid, parameters, ciphertext),
            _asn1.der_octet_string(tag),  # mac
        ]
        content_type = _AUTH_ENVELOPED_DATA_OID
    else:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(content) + padder.finalize()
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        # RFC 5652 6.1: version 0 when every RecipientInfo is version 0 (ktri by issuer/serial).
        all_v0 = all(kind == "ktri" for kind, _der in recipient_infos)
        body = [
            VERSION_0 if all_v0 else VERSION_2,
            recipient_info_set,
            *_encrypted_content_info(cipher.oid, _asn1.der_octet_string(iv), ciphertext),
        ]
        content_type = _ENVELOPED_DATA_OID
    # ContentInfo: contentType, [0] EXPLICIT content
    explicit = _asn1.der_parts(_asn1.context_tag(0), _asn1.der_parts(_asn1.TAG_SEQUENCE, body))
    info = _asn1.der_parts(_asn1.TAG_SEQUENCE, [_asn1.der_oid(content_type), *explicit])
    return b"".join(info)


def _encrypted_content_info(cipher_oid: str, parameters: bytes, ciphertext: bytes) -> list[bytes]:
    """EncryptedContentInfo for id-data, in pieces: contentType, contentEncryptionAlgorithm,
    encryptedContent [0] IMPLICIT OCTET STRING."""
    return _asn1.der_parts(
        _asn1.TAG_SEQUENCE,
        [
            _asn1.der_oid(_asn1.ID_DATA_OID),
            _asn1.der_sequence(_asn1.der_oid(cipher_oid), parameters),
            _asn1.der_header(_asn1.context_tag(0, constructed=False), len(ciphertext)),
            ciphertext,
        ],
    )


def decrypt(der: bytes, private_key: PrivateKey, certificate: x509.Certificate) -> bytes:
    """Decrypt an EnvelopedData or AuthEnvelopedData ContentInfo (DER) and return the content.

    See :func:`open_envelope` for the details and the errors raised.
    """
    return open_envelope(der, private_key, certificate).content


def open_envelope(
    der: bytes, private_key: PrivateKey, certificate: x509.Certificate
) -> DecryptedEnvelope:
    """Decrypt an enveloped message and report how it was protected.

    ``certificate`` selects the RecipientInfo (by issuer and serial number or subject key
    identifier) and must belong to ``private_key``.

    Raises :class:`KeyMismatchError`, :class:`MalformedError`, :class:`UnsupportedError`
    (e.g. 3DES content), :class:`NoMatchingRecipientError` (not encrypted for this certificate)
    and :class:`IntegrityError` (modified ciphertext or tag, wrong key).
    """
    require_key_pair(private_key, certificate, "decryption")
    info = _load_content_info(der)
    content_type = info["content_type"].native
    if content_type == "authenticated_enveloped_data":
        where, authenticated = "AuthEnvelopedData", True
    elif content_type == "enveloped_data":
        where, authenticated = "EnvelopedData", False
    else:
        raise UnsupportedError(
            f"content type {info['content_type'].dotted} ({content_type}) is not an enveloped "
            "message",
            where="ContentInfo.contentType",
        )
    try:
        body = info["content"]
        encrypted_info = body[
            "auth_encrypted_content_info" if authenticated else "encrypted_content_info"
        ]
        algorithm = encrypted_info["content_encryption_algorithm"]
        cipher_oid = _asn1.dotted(algorithm["algorithm"])
        encrypted_content = encrypted_info["encrypted_content"]
        if isinstance(encrypted_content, core.Void):
            raise UnsupportedError(
                "the encrypted content is detached (not in the message)",
                where=f"{where}.encryptedContentInfo.encryptedContent",
            )
        ciphertext = _asn1.as_bytes(encrypted_content)
        inner_type = _asn1.dotted(encrypted_info["content_type"])
        key_bytes = content_key_bytes(cipher_oid, authenticated, where)
        cek, key_management = _recover_content_key(
            body["recipient_infos"], private_key, certificate, key_bytes, where
        )
        if authenticated:
            content = decrypt_gcm(body, algorithm, cek, ciphertext, where)
        else:
            content = decrypt_cbc(algorithm, cek, ciphertext, where)
    except (ValueError, TypeError, KeyError) as exc:
        # asn1crypto parses lazily: structural errors surface when a field is first read.
        raise MalformedError(f"unreadable structure: {exc}", where=where) from None
    return DecryptedEnvelope(
        content=content,
        content_type=inner_type,
        content_cipher=CIPHER_NAMES.get(cipher_oid, cipher_oid),
        authenticated=authenticated,
        key_management=key_management,
    )


# --- encryption helpers --------------------------------------------------------------------------


def _recipient_info(
    certificate: x509.Certificate, cek: bytes, options: EncryptOptions, *, where: str
) -> tuple[str, bytes]:
    """The kind (``ktri`` or ``kari``) and the DER of the RecipientInfo for ``certificate``."""
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < options.min_rsa_bits:
            raise PolicyError(
                f"recipient {certificate.subject.rfc4514_string()} has a {public_key.key_size}-bit "
                f"RSA key; at least {options.min_rsa_bits} bits are required (BSI TR-02102-1). "
                "Lower EncryptOptions.min_rsa_bits to allow it.",
                where=where,
            )
        _require_key_usage(certificate, "key_encipherment", where)
        return "ktri", key_transport_info(certificate, public_key, cek, options.rsa_key_transport)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in SUPPORTED_CURVES:
            raise CertificateError(
                f"recipient {certificate.subject.rfc4514_string()} uses the unsupported curve "
                f"{public_key.curve.name}; supported: {', '.join(SUPPORTED_CURVES)}",
                where=where,
            )
        _require_key_usage(certificate, "key_agreement", where)
        return "kari", key_agreement_info(certificate, public_key, cek, options.ecdh_kdf_digest)
    raise CertificateError(
        f"recipient {certificate.subject.rfc4514_string()} has a {type(public_key).__name__}; "
        "only RSA and EC keys can receive S/MIME",
        where=where,
    )


def _require_key_usage(certificate: x509.Certificate, usage: str, where: str) -> None:
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not getattr(key_usage, usage):
        raise CertificateError(
            f"recipient {certificate.subject.rfc4514_string()}: the key-usage extension does "
            f"not permit {usage.replace('_', ' ')}; the certificate is not meant for encryption",
            where=where,
        )





# --- decryption helpers --------------------------------------------------------------------------


def _load_content_info(der: bytes) -> cms.ContentInfo:
    try:
        info = cms.ContentInfo.load(der)
        info["content_type"].native  # noqa: B018 - forces parsing of the outer structure
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a DER CMS ContentInfo: {exc}", where="ContentInfo") from None
    return info



def _recover_content_key(
    recipient_infos: Any,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    key_bytes: int,
    where: str,
) -> tuple[bytes, str]:
    ski = _subject_key_identifier(certificate)
    seen: list[str] = []
    for index, recipient_info in enumerate(recipient_infos):
        ri_where = f"{where}.recipientInfos[{index}]"
        kind = recipient_info.name
        value = recipient_info.chosen
        if kind == "ktri":
            seen.append(_describe_rid(value["rid"]))
            if isinstance(private_key, rsa.RSAPrivateKey) and _rid_matches(
                value["rid"], certificate, ski
            ):
                return unwrap_key_transport(value, private_key, key_bytes, f"{ri_where}.ktri")
        elif kind == "kari":
            for rek_index, encrypted_key in enumerate(value["recipient_encrypted_keys"]):
                seen.append(_describe_rid(encrypted_key["rid"]))
                if isinstance(private_key, ec.EllipticCurvePrivateKey) and _rid_matches(
                    encrypted_key["rid"], certificate, ski
                ):
                    return unwrap_key_agreement(
                        value,
                        _asn1.as_bytes(encrypted_key["encrypted_key"]),
                        private_key,
                        key_bytes,
                        f"{ri_where}.kari",
                        rek_index,
                    )
        else:
            seen.append(f"{kind} (not supported)")
    raise NoMatchingRecipientError(
        f"the message is not encrypted for {certificate.subject.rfc4514_string()} (serial "
        f"{certificate.serial_number:#x}); its recipients are: {'; '.join(seen) or 'none'}",
        where=f"{where}.recipientInfos",
    )


def _subject_key_identifier(certificate: x509.Certificate) -> bytes | None:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    except x509.ExtensionNotFound:
        return None


def _rid_matches(rid: Any, certificate: x509.Certificate, ski: bytes | None) -> bool:
    """Match a RecipientIdentifier / KeyAgreeRecipientIdentifier against our certificate."""
    if rid.name == "issuer_and_serial_number":
        issuer, serial = issuer_name_and_serial(certificate)
        return bool(
            names_equal(_asn1.der(rid.chosen["issuer"]), issuer)
            and _asn1.as_int(rid.chosen["serial_number"]) == serial
        )
    if rid.name == "subject_key_identifier":  # ktri [0] SubjectKeyIdentifier
        return ski is not None and _asn1.as_bytes(rid.chosen) == ski
    if rid.name == "r_key_id":  # kari [0] RecipientKeyIdentifier
        return ski is not None and _asn1.as_bytes(rid.chosen["subject_key_identifier"]) == ski
    return False


def _describe_rid(rid: Any) -> str:
    if rid.name == "issuer_and_serial_number":
        return (
            f"issuer {rid.chosen['issuer'].human_friendly} serial "
            f"{_asn1.as_int(rid.chosen['serial_number']):#x}"
        )
    if rid.name == "subject_key_identifier":
        return f"subject key identifier {_asn1.as_bytes(rid.chosen).hex()}"
    return f"subject key identifier {_asn1.as_bytes(rid.chosen['subject_key_identifier']).hex()}"




__all__ = [
    "DecryptedEnvelope",
    "EncryptOptions",
    "decrypt",
    "encrypt",
    "open_envelope",
]
