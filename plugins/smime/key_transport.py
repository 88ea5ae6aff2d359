"""RSA key transport (KeyTransRecipientInfo): wrapping the content key with RSAES-OAEP/SHA-256 or
RSAES-PKCS1-v1_5 for a recipient, and unwrapping it with our private key.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from . import _asn1
from ._asn1 import VERSION_0
from .algorithms import HASHES_BY_NAME, RsaKeyTransport
from .errors import IntegrityError, UnsupportedError
from .keys import issuer_and_serial_der

_OAEP_SHA256 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


def key_transport_info(
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
        VERSION_0,
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


def unwrap_key_transport(
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
