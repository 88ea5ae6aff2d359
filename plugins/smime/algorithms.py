"""Algorithm choices and their object identifiers.

Only what we are willing to produce is representable here: there is no member for 3DES, RC2, DES
or SHA-1, so no option can ask for them. Decryption and verification accept a few more legacy
algorithms (AES-192, OAEP with SHA-1, ECDH with the SHA-1 KDF) because senders use them; those are
handled where the incoming structure is parsed.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes


class ContentCipher(enum.Enum):
    """Content-encryption algorithm of an enveloped message.

    GCM variants produce AuthEnvelopedData (RFC 5083/5084, integrity protected); CBC variants
    produce EnvelopedData (RFC 5652) for recipients that do not announce GCM.
    """

    AES256_GCM = "aes256_gcm"
    AES256_CBC = "aes256_cbc"
    AES128_GCM = "aes128_gcm"
    AES128_CBC = "aes128_cbc"

    @property
    def oid(self) -> str:
        return _CONTENT_CIPHER_OIDS[self]

    @property
    def key_bytes(self) -> int:
        return 32 if self in (ContentCipher.AES256_GCM, ContentCipher.AES256_CBC) else 16

    @property
    def authenticated(self) -> bool:
        """True for AES-GCM (AuthEnvelopedData), False for AES-CBC (EnvelopedData)."""
        return self in (ContentCipher.AES256_GCM, ContentCipher.AES128_GCM)

    @property
    def smime_type(self) -> str:
        """The ``smime-type`` parameter of the application/pkcs7-mime entity (RFC 8551 3.2.2)."""
        return "authEnveloped-data" if self.authenticated else "enveloped-data"


class RsaKeyTransport(enum.Enum):
    """How the content-encryption key is encrypted to an RSA recipient."""

    RSAES_OAEP_SHA256 = "rsaes_oaep_sha256"
    """RSAES-OAEP (RFC 3560/8017) with SHA-256 and MGF1-SHA-256, empty label."""
    RSAES_PKCS1_V15 = "rsaes_pkcs1_v15"
    """RSAES-PKCS1-v1_5: legacy, only with ``EncryptOptions(allow_rsa_pkcs1v15=True)``."""


class Digest(enum.Enum):
    """Message digest for signatures and the ECDH key-derivation function."""

    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"

    @property
    def asn1_name(self) -> str:
        """The name asn1crypto uses for the digest algorithm (equals the enum value)."""
        return self.value

    @property
    def micalg(self) -> str:
        """The ``micalg`` parameter of multipart/signed (RFC 8551 3.5.3.2)."""
        return {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}[self.value]

    def hash(self) -> hashes.HashAlgorithm:
        """A fresh `cryptography` hash object for this digest."""
        return HASHES_BY_NAME[self.value]()


class SignaturePadding(enum.Enum):
    """Signature scheme for RSA signer keys (EC keys always sign with ECDSA)."""

    RSASSA_PSS = "rsassa_pss"
    """RSASSA-PSS (RFC 4056/8017), MGF1 with the message digest, salt as long as the digest."""
    RSASSA_PKCS1_V15 = "rsassa_pkcs1_v15"
    """RSASSA-PKCS1-v1_5, for peers that cannot verify PSS."""


_CONTENT_CIPHER_OIDS = {
    ContentCipher.AES256_GCM: "2.16.840.1.101.3.4.1.46",
    ContentCipher.AES256_CBC: "2.16.840.1.101.3.4.1.42",
    ContentCipher.AES128_GCM: "2.16.840.1.101.3.4.1.6",
    ContentCipher.AES128_CBC: "2.16.840.1.101.3.4.1.2",
}

HASHES_BY_NAME: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
"""Hashes by asn1crypto name; includes SHA-1 and SHA-224 for *incoming* OAEP and KDF parameters."""
