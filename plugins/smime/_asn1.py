"""ASN.1 types and object identifiers that asn1crypto does not define, and typed accessors.

asn1crypto ships no type information, so its values are ``Any`` to mypy. The accessors here
(:func:`as_bytes`, :func:`as_int`, :func:`dotted`, :func:`der`) check and convert them to plain
Python types where they enter our code, which keeps the package clean under ``mypy --strict``.

The ``der_*`` functions encode the few DER building blocks our outgoing structures need. Building
a SignedData or AuthEnvelopedData from asn1crypto objects costs hundreds of object constructions
and re-encodings per message; :mod:`.signing` and :mod:`.envelope` instead assemble the DER from
these pieces and from values asn1crypto encoded once (algorithm identifiers, IssuerAndSerialNumber,
SMIMECapabilities), which gives byte for byte the same encoding.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
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
# CMSVersion values (INTEGER)
VERSION_0 = b"\x02\x01\x00"
VERSION_2 = b"\x02\x01\x02"
VERSION_3 = b"\x02\x01\x03"


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


# --- DER encoding --------------------------------------------------------------------------------

TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_UTC_TIME = 0x17
TAG_GENERALIZED_TIME = 0x18
TAG_SEQUENCE = 0x30
TAG_SET = 0x31


def context_tag(number: int, *, constructed: bool = True) -> int:
    """The identifier octet of a context-specific tag ``[number]`` (``number`` below 31)."""
    return (0xA0 if constructed else 0x80) | number


def der_header(tag: int, length: int) -> bytes:
    """Identifier and definite length octets of a value with ``length`` content octets."""
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def der_tlv(tag: int, *contents: bytes) -> bytes:
    """A complete DER value: ``tag``, length, and the concatenated ``contents``."""
    body = contents[0] if len(contents) == 1 else b"".join(contents)
    return der_header(tag, len(body)) + body


def der_parts(tag: int, parts: list[bytes]) -> list[bytes]:
    """A DER value left in pieces, ``[header, *parts]``, for joining once: keeps a large content
    (ciphertext) from being copied at every level of nesting."""
    return [der_header(tag, sum(map(len, parts))), *parts]


def der_sequence(*items: bytes) -> bytes:
    return der_tlv(TAG_SEQUENCE, *items)


def der_set_of(items: Iterable[bytes]) -> bytes:
    """A DER SET OF: the element encodings sorted (as asn1crypto sorts them)."""
    return der_tlv(TAG_SET, *sorted(items))


def der_octet_string(value: bytes) -> bytes:
    return der_tlv(TAG_OCTET_STRING, value)


def der_integer(value: int) -> bytes:
    """A DER INTEGER: minimal two's complement."""
    size = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return der_tlv(TAG_INTEGER, value.to_bytes(size, "big", signed=True))


@functools.lru_cache(maxsize=256)
def der_oid(dotted_oid: str) -> bytes:
    """The DER OBJECT IDENTIFIER for a dotted OID (encoded once by asn1crypto)."""
    return der(core.ObjectIdentifier(dotted_oid))
