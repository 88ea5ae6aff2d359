"""ASN.1 types and object identifiers that asn1crypto does not define, and typed accessors.

asn1crypto ships no type information, so its values are ``Any`` to mypy. The accessors here
(:func:`as_bytes`, :func:`as_int`, :func:`dotted`, :func:`der`) check and convert them to plain
Python types where they enter our code, which keeps the package clean under ``mypy --strict``.
"""

from __future__ import annotations

from typing import Any, cast

from asn1crypto import algos, core

# RFC 5084 2.1 (AES-GCM content encryption).
AES_GCM_OIDS = {
    "2.16.840.1.101.3.4.1.6": 16,  # id-aes128-GCM
    "2.16.840.1.101.3.4.1.26": 24,  # id-aes192-GCM
    "2.16.840.1.101.3.4.1.46": 32,  # id-aes256-GCM
}
# RFC 3565 (AES-CBC content encryption).
AES_CBC_OIDS = {
    "2.16.840.1.101.3.4.1.2": 16,  # id-aes128-CBC
    "2.16.840.1.101.3.4.1.22": 24,  # id-aes192-CBC
    "2.16.840.1.101.3.4.1.42": 32,  # id-aes256-CBC
}
# RFC 3394 AES key wrap, used as KeyWrapAlgorithm of key agreement.
AES_WRAP_OIDS = {
    "2.16.840.1.101.3.4.1.5": 16,  # id-aes128-wrap
    "2.16.840.1.101.3.4.1.25": 24,  # id-aes192-wrap
    "2.16.840.1.101.3.4.1.45": 32,  # id-aes256-wrap
}
AES256_WRAP_OID = "2.16.840.1.101.3.4.1.45"

# RFC 5753 7.1.4 / SEC 1: ECDH key-agreement schemes with the ANSI X9.63 KDF.
# (hash name, cofactor DH). Cofactor and standard DH agree for the curves we accept (cofactor 1).
ECDH_SCHEMES = {
    "1.3.133.16.840.63.0.2": ("sha1", False),  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": ("sha224", False),
    "1.3.132.1.11.1": ("sha256", False),  # dhSinglePass-stdDH-sha256kdf-scheme
    "1.3.132.1.11.2": ("sha384", False),
    "1.3.132.1.11.3": ("sha512", False),
    "1.3.133.16.840.63.0.3": ("sha1", True),  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.14.0": ("sha224", True),
    "1.3.132.1.14.1": ("sha256", True),
    "1.3.132.1.14.2": ("sha384", True),
    "1.3.132.1.14.3": ("sha512", True),
}
ECDH_STD_SCHEME_BY_HASH = {
    "sha256": "1.3.132.1.11.1",
    "sha384": "1.3.132.1.11.2",
    "sha512": "1.3.132.1.11.3",
}

RSAES_PKCS1_V15_OID = "1.2.840.113549.1.1.1"
RSAES_OAEP_OID = "1.2.840.113549.1.1.7"
RSASSA_PSS_OID = "1.2.840.113549.1.1.10"
ID_DATA_OID = "1.2.840.113549.1.7.1"


class GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 3.2: ``GCMParameters ::= SEQUENCE { aes-nonce, aes-ICVlen DEFAULT 12 }``."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):  # type: ignore[misc]
    """RFC 5753 7.2: the SharedInfo input of the X9.63 KDF."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("key_info", algos.AnyAlgorithmIdentifier),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


def as_bytes(value: Any) -> bytes:
    """The ``.native`` of an asn1crypto OCTET STRING / BIT STRING as ``bytes``."""
    native = value.native
    if not isinstance(native, bytes):
        raise TypeError(f"expected an octet string, got {type(native).__name__}")
    return native


def as_int(value: Any) -> int:
    native = value.native
    if not isinstance(native, int):
        raise TypeError(f"expected an integer, got {type(native).__name__}")
    return native


def dotted(value: Any) -> str:
    """The dotted form of an asn1crypto OBJECT IDENTIFIER."""
    return cast(str, value.dotted)


def is_absent(value: Any) -> bool:
    """True for a missing OPTIONAL field (asn1crypto's ``Void``) or an ASN.1 NULL."""
    if isinstance(value, (core.Void, core.Null)):
        return True
    return isinstance(value, core.Any) and value.dump() == b"\x05\x00"


def parse_as(value: Any, spec: type[Any]) -> Any:
    """``value`` as an instance of ``spec``: parses an ``Any``, passes an already typed value."""
    if isinstance(value, spec):
        return value
    if isinstance(value, core.Any):
        return value.parse(spec)
    raise TypeError(f"expected {spec.__name__}, got {type(value).__name__}")


def der(value: Any) -> bytes:
    """The DER encoding of an asn1crypto value."""
    return cast(bytes, value.dump())
