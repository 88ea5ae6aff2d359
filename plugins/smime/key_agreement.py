"""ECDH key agreement (KeyAgreeRecipientInfo, RFC 5753): an ephemeral-static ECDH key,
``dhSinglePass-stdDH-sha*kdf-scheme`` (X9.63 KDF) and AES key wrap, both ways.
"""

from __future__ import annotations

import functools
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from . import _asn1
from ._asn1 import VERSION_3
from .algorithms import HASHES_BY_NAME, Digest
from .errors import IntegrityError, MalformedError, UnsupportedError
from .keys import SUPPORTED_CURVES, issuer_and_serial_der

_KEK_BYTES = 32  # we always wrap with AES-256


def key_agreement_info(
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
        VERSION_3,
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


def unwrap_key_agreement(
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
