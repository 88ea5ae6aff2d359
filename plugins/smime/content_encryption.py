"""Content encryption of CMS enveloped data: AES-GCM (AuthEnvelopedData, RFC 5083/5084) and the
ciphers that can be read (AES-CBC; 3DES, RC2 and DES are named and refused), with the tag and
padding checks that detect a modified message.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import _asn1
from .errors import IntegrityError, MalformedError, PolicyError, UnsupportedError

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
_MIN_GCM_TAG_BYTES = 12  # RFC 5084 allows 12..16; shorter tags are refused


def aesgcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes) -> tuple[bytes, bytes]:
    """AES-GCM ciphertext and 16-byte tag."""
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, encryptor.tag


CIPHER_NAMES = {
    **{oid: f"aes{size * 8}-GCM" for oid, size in _asn1.AES_GCM_OIDS.items()},
    **{oid: f"aes{size * 8}-CBC" for oid, size in _asn1.AES_CBC_OIDS.items()},
    "1.2.840.113549.3.7": "des-ede3-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.3.14.3.2.7": "des-cbc",
}


def content_key_bytes(cipher_oid: str, authenticated: bool, where: str) -> int:
    table = _asn1.AES_GCM_OIDS if authenticated else _asn1.AES_CBC_OIDS
    if cipher_oid in table:
        return table[cipher_oid]
    kind = "AuthEnvelopedData" if authenticated else "EnvelopedData"
    raise UnsupportedError(
        f"content cipher {CIPHER_NAMES.get(cipher_oid, cipher_oid)} is not supported in "
        f"{kind}; supported: " + ", ".join(CIPHER_NAMES[oid] for oid in table),
        where=f"{where}.encryptedContentInfo.contentEncryptionAlgorithm",
    )


def decrypt_gcm(body: Any, algorithm: Any, cek: bytes, ciphertext: bytes, where: str) -> bytes:
    params_where = f"{where}.authEncryptedContentInfo.contentEncryptionAlgorithm.parameters"
    try:
        params = _asn1.parse_as(algorithm["parameters"], _asn1.GCMParameters)
        nonce = _asn1.as_bytes(params["aes_nonce"])
        tag_length = _asn1.as_int(params["aes_icvlen"])
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"unreadable GCMParameters: {exc}", where=params_where) from None
    if not _MIN_GCM_TAG_BYTES <= tag_length <= GCM_TAG_BYTES:
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


def decrypt_cbc(algorithm: Any, cek: bytes, ciphertext: bytes, where: str) -> bytes:
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
