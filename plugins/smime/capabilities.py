"""SMIMECapabilities (RFC 8551 2.5.2): what a peer says it can decrypt, and what we announce.

A signer lists the algorithms it supports in a signed attribute, in order of preference. A sender
that has a verified signature of its peer uses it to pick the content cipher: AES-256-GCM
(AuthEnvelopedData) when announced, otherwise AES-256-CBC.

    >>> caps = parse_capabilities(encode_capabilities(OUR_CAPABILITIES))
    >>> caps.announces_aes256_gcm
    True
    >>> caps.choose_content_cipher()
    <ContentCipher.AES256_GCM: 'aes256_gcm'>
"""

from __future__ import annotations

import functools

import attrs
from asn1crypto import cms, core

from . import _asn1
from .algorithms import ContentCipher
from .errors import MalformedError

CAPABILITY_NAMES = {
    "2.16.840.1.101.3.4.1.46": "aes256-GCM",
    "2.16.840.1.101.3.4.1.26": "aes192-GCM",
    "2.16.840.1.101.3.4.1.6": "aes128-GCM",
    "2.16.840.1.101.3.4.1.42": "aes256-CBC",
    "2.16.840.1.101.3.4.1.22": "aes192-CBC",
    "2.16.840.1.101.3.4.1.2": "aes128-CBC",
    "2.16.840.1.101.3.4.1.47": "aes256-CCM",
    "1.2.840.113549.3.7": "des-ede3-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.3.14.3.2.7": "des-cbc",
    "1.2.840.113549.1.1.7": "rsaesOaep",
    "1.2.840.113549.1.1.1": "rsaEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.113549.1.9.16.11.1": "preferBinaryInside",
}
"""Readable names of capabilities commonly seen in the wild (for logs and error messages)."""

# Our order of preference when choosing among what a peer announces: strongest first.
_CIPHER_PREFERENCE = (
    ContentCipher.AES256_GCM,
    ContentCipher.AES256_CBC,
    ContentCipher.AES128_GCM,
    ContentCipher.AES128_CBC,
)


@attrs.frozen
class Capability:
    """One SMIMECapability: an algorithm OID and its DER-encoded parameters (None if absent)."""

    oid: str
    parameters: bytes | None = None

    @property
    def name(self) -> str:
        """A readable name, or the dotted OID when the algorithm is not known here."""
        return CAPABILITY_NAMES.get(self.oid, self.oid)


@attrs.frozen
class SmimeCapabilities:
    """The capabilities a signer announced, in its order of preference.

    ``entries`` is empty when the signature carried no SMIMECapabilities attribute.
    """

    entries: tuple[Capability, ...] = ()

    def announces(self, oid: str) -> bool:
        """True when the peer lists the algorithm ``oid`` (dotted form)."""
        return any(entry.oid == oid for entry in self.entries)

    def supports(self, cipher: ContentCipher) -> bool:
        """True when the peer announces it can decrypt ``cipher``."""
        return self.announces(cipher.oid)

    @property
    def announces_aes256_gcm(self) -> bool:
        return self.supports(ContentCipher.AES256_GCM)

    @property
    def announces_aes256_cbc(self) -> bool:
        return self.supports(ContentCipher.AES256_CBC)

    @property
    def announces_aes128_gcm(self) -> bool:
        return self.supports(ContentCipher.AES128_GCM)

    @property
    def announces_aes128_cbc(self) -> bool:
        return self.supports(ContentCipher.AES128_CBC)

    @property
    def announces_rsaes_oaep(self) -> bool:
        return self.announces(_asn1.RSAES_OAEP_OID)

    @property
    def content_ciphers(self) -> tuple[ContentCipher, ...]:
        """The content ciphers we can produce that the peer announces, in the peer's order."""
        by_oid = {cipher.oid: cipher for cipher in ContentCipher}
        return tuple(by_oid[entry.oid] for entry in self.entries if entry.oid in by_oid)

    def choose_content_cipher(
        self,
        *,
        allow_aes128: bool = False,
        fallback: ContentCipher = ContentCipher.AES256_CBC,
    ) -> ContentCipher:
        """Pick the content cipher for a message to this peer.

        Chooses by *our* preference (AES-256-GCM, AES-256-CBC, then the AES-128 variants when
        ``allow_aes128``) among what the peer announces, so a peer listing CBC before GCM still
        gets GCM. Without a usable announcement (no attribute, or only legacy ciphers such as
        3DES that we never produce) returns ``fallback``; AES-256-CBC is the default because
        every S/MIME 3.2+ client decrypts it.
        """
        announced = set(self.content_ciphers)
        for cipher in _CIPHER_PREFERENCE:
            if cipher in announced and (allow_aes128 or cipher.key_bytes == 32):
                return cipher
        return fallback


OUR_CAPABILITIES = SmimeCapabilities(
    (
        Capability(ContentCipher.AES256_GCM.oid),
        Capability(ContentCipher.AES128_GCM.oid),
        Capability(ContentCipher.AES256_CBC.oid),
        Capability(ContentCipher.AES128_CBC.oid),
        # RSAES-OAEP with SHA-256 / MGF1-SHA-256 (RFC 4055 rSAES-OAEP-SHA256-Identifier).
        Capability(
            _asn1.RSAES_OAEP_OID,
            _asn1.der(
                cms.KeyEncryptionAlgorithm(
                    {
                        "algorithm": "rsaes_oaep",
                        "parameters": {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "mask_gen_algorithm": {
                                "algorithm": "mgf1",
                                "parameters": {"algorithm": "sha256"},
                            },
                        },
                    }
                )["parameters"]
            ),
        ),
    )
)
"""What siegel announces when it signs: everything it can decrypt, GCM first (RFC 8551 2.5.2)."""


def encode_capabilities(capabilities: SmimeCapabilities) -> cms.SMIMECapabilites:
    """The asn1crypto ``SMIMECapabilities`` value (a SEQUENCE OF SMIMECapability)."""
    entries = []
    for entry in capabilities.entries:
        value: dict[str, object] = {"capability_id": entry.oid}
        if entry.parameters is not None:
            value["parameters"] = core.Any.load(entry.parameters)
        entries.append(value)
    return cms.SMIMECapabilites(entries)


def capabilities_attribute_der(capabilities: SmimeCapabilities) -> bytes:
    """The DER of the SMIMECapabilities signed attribute (an ``Attribute``) announcing
    ``capabilities``; encoded once per distinct value."""
    try:
        hash(capabilities)
    except TypeError:  # entries given as a list: encode without the cache
        return _encode_capabilities_attribute(capabilities)
    return _capabilities_attribute_der(capabilities)


def _encode_capabilities_attribute(capabilities: SmimeCapabilities) -> bytes:
    return _asn1.der(
        cms.CMSAttribute(
            {"type": "smime_capabilities", "values": [encode_capabilities(capabilities)]}
        )
    )


_capabilities_attribute_der = functools.lru_cache(maxsize=32)(_encode_capabilities_attribute)


def parse_capabilities(value: bytes | cms.SMIMECapabilites) -> SmimeCapabilities:
    """Parse an SMIMECapabilities value (DER bytes or an asn1crypto value).

    Raises :class:`MalformedError` when the value is not a SEQUENCE OF SMIMECapability.
    """
    try:
        parsed = cms.SMIMECapabilites.load(value) if isinstance(value, bytes) else value
        entries = []
        for index, item in enumerate(parsed):
            try:
                params = item["parameters"]
                entries.append(
                    Capability(
                        _asn1.dotted(item["capability_id"]),
                        None if isinstance(params, core.Void) else _asn1.der(params),
                    )
                )
            except (ValueError, TypeError) as exc:
                raise MalformedError(
                    f"unreadable SMIMECapability: {exc}", where=f"SMIMECapabilities[{index}]"
                ) from None
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"not a SEQUENCE OF SMIMECapability: {exc}") from None
    return SmimeCapabilities(tuple(entries))
