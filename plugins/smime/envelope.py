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
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import attrs
from asn1crypto import algos, cms, core
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from . import _asn1
from .algorithms import (
    HASHES_BY_NAME,
    ContentCipher,
    Digest,
    RsaKeyTransport,
)
from .errors import (
    CertificateError,
    IntegrityError,
    MalformedError,
    NoMatchingRecipientError,
    PolicyError,
    UnsupportedError,
)
from .keys import (
    SUPPORTED_CURVES,
    PrivateKey,
    issuer_and_serial_der,
    issuer_name_and_serial,
    names_equal,
    require_key_pair,
)

_GCM_NONCE_BYTES = 12
_GCM_TAG_BYTES = 16
_MIN_GCM_TAG_BYTES = 12  # RFC 5084 allows 12..16; shorter tags are refused
_KEK_BYTES = 32  # we always wrap with AES-256
_AUTH_ENVELOPED_DATA_OID = "1.2.840.113549.1.9.16.1.23"
_ENVELOPED_DATA_OID = "1.2.840.113549.1.7.3"
# CMSVersion values (INTEGER)
_VERSION_0 = b"\x02\x01\x00"
_VERSION_2 = b"\x02\x01\x02"
_VERSION_3 = b"\x02\x01\x03"


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
        nonce = os.urandom(_GCM_NONCE_BYTES)
        ciphertext, tag = _aesgcm_encrypt(cek, nonce, content)
        # GCMParameters: aes-nonce, aes-ICVlen (16, not the DEFAULT 12, so it is encoded)
        parameters = _asn1.der_sequence(
            _asn1.der_octet_string(nonce), _asn1.der_integer(_GCM_TAG_BYTES)
        )
        body = [
            _VERSION_0,
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
            _VERSION_0 if all_v0 else _VERSION_2,
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
        key_bytes = _content_key_bytes(cipher_oid, authenticated, where)
        cek, key_management = _recover_content_key(
            body["recipient_infos"], private_key, certificate, key_bytes, where
        )
        if authenticated:
            content = _decrypt_gcm(body, algorithm, cek, ciphertext, where)
        else:
            content = _decrypt_cbc(algorithm, cek, ciphertext, where)
    except (ValueError, TypeError, KeyError) as exc:
        # asn1crypto parses lazily: structural errors surface when a field is first read.
        raise MalformedError(f"unreadable structure: {exc}", where=where) from None
    return DecryptedEnvelope(
        content=content,
        content_type=inner_type,
        content_cipher=_CIPHER_NAMES.get(cipher_oid, cipher_oid),
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
        return "ktri", _key_transport_info(certificate, public_key, cek, options.rsa_key_transport)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in SUPPORTED_CURVES:
            raise CertificateError(
                f"recipient {certificate.subject.rfc4514_string()} uses the unsupported curve "
                f"{public_key.curve.name}; supported: {', '.join(SUPPORTED_CURVES)}",
                where=where,
            )
        _require_key_usage(certificate, "key_agreement", where)
        return "kari", _key_agreement_info(certificate, public_key, cek, options.ecdh_kdf_digest)
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


_OAEP_SHA256 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def _key_transport_info(
    certificate: x509.Certificate,
    public_key: rsa.RSAPublicKey,
    cek: bytes,
    transport: RsaKeyTransport,
) -> bytes:
    """KeyTransRecipientInfo (the untagged ``ktri`` choice of RecipientInfo)."""
    if transport is RsaKeyTransport.RSAES_OAEP_SHA256:
        encrypted_key = public_key.encrypt(cek, _OAEP_SHA256)
    else:
        encrypted_key = public_key.encrypt(cek, asym_padding.PKCS1v15())
    return _asn1.der_sequence(
        _VERSION_0,
        issuer_and_serial_der(certificate),  # rid
        _key_transport_algorithm_der(transport),
        _asn1.der_octet_string(encrypted_key),
    )


@functools.cache
def _key_transport_algorithm_der(transport: RsaKeyTransport) -> bytes:
    algorithm: dict[str, Any]
    if transport is RsaKeyTransport.RSAES_OAEP_SHA256:
        algorithm = {
            "algorithm": "rsaes_oaep",
            "parameters": {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
            },
        }
    else:
        algorithm = {"algorithm": "rsaes_pkcs1v15"}
    return _asn1.der(cms.KeyEncryptionAlgorithm(algorithm))


def _key_agreement_info(
    certificate: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    cek: bytes,
    kdf_digest: Digest,
) -> bytes:
    """KeyAgreeRecipientInfo as the ``kari`` choice of RecipientInfo ([1] IMPLICIT)."""
    ephemeral = ec.generate_private_key(public_key.curve)
    shared_secret = ephemeral.exchange(ec.ECDH(), public_key)
    wrap_algorithm = _aes256_wrap_der()
    kek = _x963_kek(shared_secret, kdf_digest.asn1_name, wrap_algorithm, None, _KEK_BYTES)
    point = ephemeral.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    # RFC 5753 3.1.1: originatorKey with id-ecPublicKey, parameters absent.
    originator_key = _asn1.der_tlv(
        _asn1.context_tag(1),  # [1] IMPLICIT OriginatorPublicKey
        _ec_public_key_algorithm_der(),
        _asn1.der_tlv(_asn1.TAG_BIT_STRING, b"\x00", point),
    )
    recipient_encrypted_key = _asn1.der_sequence(
        issuer_and_serial_der(certificate),  # rid
        _asn1.der_octet_string(aes_key_wrap(kek, cek)),
    )
    return _asn1.der_tlv(
        _asn1.context_tag(1),
        _VERSION_3,
        _asn1.der_tlv(_asn1.context_tag(0), originator_key),  # originator [0] EXPLICIT
        _key_agreement_algorithm_der(kdf_digest.asn1_name),
        _asn1.der_sequence(recipient_encrypted_key),  # recipientEncryptedKeys
    )


@functools.cache
def _aes256_wrap_der() -> bytes:
    return _asn1.der(cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"}))


@functools.cache
def _ec_public_key_algorithm_der() -> bytes:
    return _asn1.der(asn1_keys.PublicKeyAlgorithm({"algorithm": "ec"}))


@functools.cache
def _key_agreement_algorithm_der(kdf_digest_name: str) -> bytes:
    return _asn1.der(
        cms.KeyEncryptionAlgorithm(
            {
                "algorithm": _asn1.ECDH_STD_SCHEME_BY_HASH[kdf_digest_name],
                "parameters": cms.KeyEncryptionAlgorithm.load(_aes256_wrap_der()),
            }
        )
    )


def _x963_kek(
    shared_secret: bytes, hash_name: str, wrap_algorithm_der: bytes, ukm: bytes | None, size: int
) -> bytes:
    """RFC 5753 7.2: KEK = X9.63-KDF(Z, ECC-CMS-SharedInfo)."""
    kdf = X963KDF(
        algorithm=HASHES_BY_NAME[hash_name](),
        length=size,
        sharedinfo=_shared_info_der(wrap_algorithm_der, ukm, size),
    )
    return kdf.derive(shared_secret)


@functools.lru_cache(maxsize=64)
def _shared_info_der(wrap_algorithm_der: bytes, ukm: bytes | None, size: int) -> bytes:
    shared_info: dict[str, Any] = {
        "key_info": algos.AnyAlgorithmIdentifier.load(wrap_algorithm_der),
        "supp_pub_info": (size * 8).to_bytes(4, "big"),
    }
    if ukm is not None:
        shared_info["entity_u_info"] = ukm
    return _asn1.der(_asn1.EccCmsSharedInfo(shared_info))


def _aesgcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """AES-GCM ciphertext and 16-byte tag."""
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag


# --- decryption helpers --------------------------------------------------------------------------

_CIPHER_NAMES = {
    **{oid: f"aes{size * 8}-GCM" for oid, size in _asn1.AES_GCM_OIDS.items()},
    **{oid: f"aes{size * 8}-CBC" for oid, size in _asn1.AES_CBC_OIDS.items()},
    "1.2.840.113549.3.7": "des-ede3-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.3.14.3.2.7": "des-cbc",
}


def _load_content_info(der: bytes) -> cms.ContentInfo:
    try:
        info = cms.ContentInfo.load(der)
        info["content_type"].native  # noqa: B018 - forces parsing of the outer structure
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a DER CMS ContentInfo: {exc}", where="ContentInfo") from None
    return info


def _content_key_bytes(cipher_oid: str, authenticated: bool, where: str) -> int:
    table = _asn1.AES_GCM_OIDS if authenticated else _asn1.AES_CBC_OIDS
    if cipher_oid in table:
        return table[cipher_oid]
    kind = "AuthEnvelopedData" if authenticated else "EnvelopedData"
    raise UnsupportedError(
        f"content cipher {_CIPHER_NAMES.get(cipher_oid, cipher_oid)} is not supported in "
        f"{kind}; supported: " + ", ".join(_CIPHER_NAMES[oid] for oid in table),
        where=f"{where}.encryptedContentInfo.contentEncryptionAlgorithm",
    )


def _decrypt_gcm(body: Any, algorithm: Any, cek: bytes, ciphertext: bytes, where: str) -> bytes:
    params_where = f"{where}.authEncryptedContentInfo.contentEncryptionAlgorithm.parameters"
    try:
        params = _asn1.parse_as(algorithm["parameters"], _asn1.GCMParameters)
        nonce = _asn1.as_bytes(params["aes_nonce"])
        tag_length = _asn1.as_int(params["aes_icvlen"])
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"unreadable GCMParameters: {exc}", where=params_where) from None
    if not _MIN_GCM_TAG_BYTES <= tag_length <= _GCM_TAG_BYTES:
        raise PolicyError(
            f"GCM tag length {tag_length} is refused; 12 to 16 bytes are accepted",
            where=params_where,
        )
    tag = _asn1.as_bytes(body["mac"])
    if len(tag) != tag_length:
        raise MalformedError(
            f"the tag has {len(tag)} bytes, GCMParameters announce {tag_length}",
            where=f"{where}.mac",
        )
    auth_attrs = body["auth_attrs"]
    # RFC 5083 2.2: authenticated attributes are MACed in their DER SET OF encoding.
    aad = b"" if isinstance(auth_attrs, core.Void) else b"\x31" + _asn1.der(auth_attrs)[1:]
    try:
        decryptor = Cipher(
            algorithms.AES(cek), modes.GCM(nonce, tag, min_tag_length=_MIN_GCM_TAG_BYTES)
        ).decryptor()
        if aad:
            decryptor.authenticate_additional_data(aad)
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise IntegrityError(
            "AES-GCM authentication failed: the message was modified in transit or "
            "encrypted with a different key; do not use its content",
            where=f"{where}.mac",
        ) from None


def _decrypt_cbc(algorithm: Any, cek: bytes, ciphertext: bytes, where: str) -> bytes:
    where = f"{where}.encryptedContentInfo"
    try:
        iv = _asn1.as_bytes(_asn1.parse_as(algorithm["parameters"], core.OctetString))
    except (ValueError, TypeError) as exc:
        raise MalformedError(
            f"unreadable AES-CBC IV: {exc}", where=f"{where}.contentEncryptionAlgorithm"
        ) from None
    if len(iv) != 16 or len(ciphertext) % 16 or not ciphertext:
        raise MalformedError(
            f"AES-CBC needs a 16-byte IV and whole blocks; got IV {len(iv)} bytes, ciphertext "
            f"{len(ciphertext)} bytes",
            where=where,
        )
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise IntegrityError(
            "AES-CBC decryption failed (bad padding): wrong key or modified message. "
            "EnvelopedData has no integrity protection; prefer AuthEnvelopedData",
            where=f"{where}.encryptedContent",
        ) from None


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
                return _unwrap_key_transport(value, private_key, key_bytes, f"{ri_where}.ktri")
        elif kind == "kari":
            for rek_index, encrypted_key in enumerate(value["recipient_encrypted_keys"]):
                seen.append(_describe_rid(encrypted_key["rid"]))
                if isinstance(private_key, ec.EllipticCurvePrivateKey) and _rid_matches(
                    encrypted_key["rid"], certificate, ski
                ):
                    return _unwrap_key_agreement(
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


def _unwrap_key_transport(
    ktri: Any, private_key: rsa.RSAPrivateKey, key_bytes: int, where: str
) -> tuple[bytes, str]:
    algorithm = ktri["key_encryption_algorithm"]
    oid = _asn1.dotted(algorithm["algorithm"])
    encrypted_key = _asn1.as_bytes(ktri["encrypted_key"])
    if oid == _asn1.RSAES_PKCS1_V15_OID:
        # RFC 3218 2.3.2: on any failure continue with a random key, so the only observable
        # outcome is the content-decryption failure, never a distinguishable padding error.
        try:
            cek = private_key.decrypt(encrypted_key, asym_padding.PKCS1v15())
        except ValueError:
            cek = b""
        if len(cek) != key_bytes:
            cek = os.urandom(key_bytes)
        return cek, "ktri rsaEncryption(PKCS#1 v1.5)"
    if oid == _asn1.RSAES_OAEP_OID:
        oaep, description = _oaep_padding(algorithm, f"{where}.keyEncryptionAlgorithm")
        try:
            cek = private_key.decrypt(encrypted_key, oaep)
        except ValueError:
            raise IntegrityError(
                "RSAES-OAEP decryption of the content-encryption key failed: the message was "
                "encrypted to another key with the same issuer and serial, or modified",
                where=f"{where}.encryptedKey",
            ) from None
        if len(cek) != key_bytes:
            raise IntegrityError(
                f"the decrypted content-encryption key has {len(cek)} bytes, the content cipher "
                f"needs {key_bytes}",
                where=f"{where}.encryptedKey",
            )
        return cek, f"ktri {description}"
    raise UnsupportedError(
        f"key transport algorithm {oid} is not supported (RSAES-OAEP and PKCS#1 v1.5 are)",
        where=f"{where}.keyEncryptionAlgorithm",
    )


def _oaep_padding(algorithm: Any, where: str) -> tuple[asym_padding.OAEP, str]:
    return _oaep_padding_for(_asn1.der(algorithm), where)


@functools.lru_cache(maxsize=64)
def _oaep_padding_for(der: bytes, where: str) -> tuple[asym_padding.OAEP, str]:
    """:func:`_oaep_padding` by the DER of the keyEncryptionAlgorithm, which senders keep the same."""
    params = cms.KeyEncryptionAlgorithm.load(der)["parameters"]
    if _asn1.is_absent(params):
        hash_name = mgf_hash_name = "sha1"  # RFC 4055: all defaults
        label = b""
    else:
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise UnsupportedError(
                f"OAEP mask generation {mgf['algorithm'].dotted} is not supported (MGF1 is)",
                where=where,
            )
        mgf_hash_name = mgf["parameters"]["algorithm"].native
        p_source = params["p_source_algorithm"]
        if p_source["algorithm"].native != "p_specified":
            raise UnsupportedError(
                f"OAEP label source {p_source['algorithm'].dotted} is not supported", where=where
            )
        label = _asn1.as_bytes(p_source["parameters"])
    for name in (hash_name, mgf_hash_name):
        if name not in HASHES_BY_NAME:
            raise UnsupportedError(f"OAEP hash {name} is not supported", where=where)
    oaep = asym_padding.OAEP(
        mgf=asym_padding.MGF1(HASHES_BY_NAME[mgf_hash_name]()),
        algorithm=HASHES_BY_NAME[hash_name](),
        label=label or None,
    )
    return oaep, f"rsaesOaep({hash_name})"


def _unwrap_key_agreement(
    kari: Any,
    encrypted_key: bytes,
    private_key: ec.EllipticCurvePrivateKey,
    key_bytes: int,
    where: str,
    rek_index: int,
) -> tuple[bytes, str]:
    curve = private_key.curve
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise UnsupportedError(
            "only ephemeral-static ECDH (originatorKey) is supported; this message identifies "
            f"a static originator key by {originator.name}",
            where=f"{where}.originator",
        )
    originator_key = originator.chosen
    curve_params = originator_key["algorithm"]["parameters"]
    if not _asn1.is_absent(curve_params):
        named = curve_params.chosen if curve_params.name == "named" else None
        if named is None or named.dotted != SUPPORTED_CURVES.get(curve.name):
            raise MalformedError(
                f"the originator key is not on the recipient's curve {curve.name}",
                where=f"{where}.originator.originatorKey.algorithm",
            )
    point = _asn1.as_bytes(originator_key["public_key"])
    try:
        originator_public = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError:
        raise MalformedError(
            f"the originator public key is not a point on {curve.name}",
            where=f"{where}.originator.originatorKey.publicKey",
        ) from None

    algorithm = kari["key_encryption_algorithm"]
    scheme_oid = _asn1.dotted(algorithm["algorithm"])
    if scheme_oid not in _asn1.ECDH_SCHEMES:
        raise UnsupportedError(
            f"key agreement scheme {scheme_oid} is not supported (dhSinglePass stdDH/cofactorDH "
            "with SHA-1/SHA-2 KDFs are)",
            where=f"{where}.keyEncryptionAlgorithm",
        )
    hash_name, cofactor = _asn1.ECDH_SCHEMES[scheme_oid]
    wrap_der = _asn1.der(algorithm["parameters"])
    wrap_oid = _asn1.dotted(cms.KeyEncryptionAlgorithm.load(wrap_der)["algorithm"])
    if wrap_oid not in _asn1.AES_WRAP_OIDS:
        raise UnsupportedError(
            f"key wrap algorithm {wrap_oid} is not supported (AES key wrap is; never 3DES)",
            where=f"{where}.keyEncryptionAlgorithm.parameters",
        )
    ukm_value = kari["ukm"]
    ukm = None if isinstance(ukm_value, core.Void) else _asn1.as_bytes(ukm_value)
    shared_secret = private_key.exchange(ec.ECDH(), originator_public)
    kek = _x963_kek(shared_secret, hash_name, wrap_der, ukm, _asn1.AES_WRAP_OIDS[wrap_oid])
    try:
        cek = aes_key_unwrap(kek, encrypted_key)
    except InvalidUnwrap:
        raise IntegrityError(
            "AES key unwrap failed: the message was modified or encrypted to another key",
            where=f"{where}.recipientEncryptedKeys[{rek_index}].encryptedKey",
        ) from None
    if len(cek) != key_bytes:
        raise IntegrityError(
            f"the unwrapped content-encryption key has {len(cek)} bytes, the content cipher "
            f"needs {key_bytes}",
            where=f"{where}.recipientEncryptedKeys[{rek_index}].encryptedKey",
        )
    scheme = "cofactorDH" if cofactor else "stdDH"
    wrap_name = f"aes{_asn1.AES_WRAP_OIDS[wrap_oid] * 8}-wrap"
    return cek, f"kari dhSinglePass-{scheme}-{hash_name}kdf {wrap_name}"


__all__ = [
    "DecryptedEnvelope",
    "EncryptOptions",
    "decrypt",
    "encrypt",
    "open_envelope",
]
