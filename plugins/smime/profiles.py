"""Which algorithms a recipient gets: chosen per recipient from evidence, strongest first.

A message the recipient's program cannot open protects nothing, so the choice follows what is
known about that program (issue 15), in this order:

1. **harvested**: the SMIMECapabilities the recipient announced in a signed message whose
   signature siegel verified (RFC 8551 2.5.2). AES-256-GCM when announced, else AES-256-CBC;
   for RSA keys RSAES-OAEP when announced, else RSAES-PKCS1-v1_5 (RFC 8551 2.3: every client
   must read it).
2. **configured**: ``[settings.smime.recipients."<address or domain>"]``; the administrator
   knows the partner's software. An address entry wins over its domain's.
3. **tenant default**: the ``profile`` for recipients nothing is known about:

   * ``interoperable``: AES-256-CBC EnvelopedData with RSAES-PKCS1-v1_5 key transport for RSA
     keys. The tests measured that OpenSSL 3.0, NSS 3.87 (``cmsutil``) and GnuPG 2.2 (``gpgsm``)
     decrypt this; AES-GCM (AuthEnvelopedData) and RSA-OAEP are refused by NSS and gpgsm (see
     docs/smime-interop). Deviations from BSI TR-02102-1: RSAES-PKCS1-v1_5, and CBC without
     integrity protection (the signature inside still detects changes). An EC key needs ECDH,
     which neither NSS 3.87 nor gpgsm 2.2 decrypts: without evidence, S/MIME declines such a
     recipient (the next protection method serves), because a message the recipient's program
     cannot open helps nobody.
   * ``strict``: only TR-02102-1 algorithms (AES-256, RSA-OAEP or ECDH), and only where a
     recipient is known to read them (harvested or configured). Otherwise ``can_serve`` says no
     with the reason, and the tenant's next protection method (the password PDF) serves.

Signatures: RSA-PSS verified in OpenSSL, NSS 3.87 and gpgsm 2.2 in the tests, so it stays the
default (``rsa_signature``); a recipient entry can ask for PKCS#1 v1.5. EC keys sign with ECDSA.

    >>> choice = choose_algorithms(profile="interoperable", key_kind="rsa", harvested=None,
    ...                            configured=None, rsa_signature=SignaturePadding.RSASSA_PSS)
    >>> choice.label
    'AES-256-CBC, RSAES-PKCS1-v1_5, RSASSA-PSS'
    >>> choice.source
    'tenant-default'
"""

from __future__ import annotations

from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from siegel import Text

from . import _asn1
from .algorithms import ContentCipher, RsaKeyTransport, SignaturePadding
from .capabilities import Capability, SmimeCapabilities

Profile = Literal["interoperable", "strict"]
PROFILES: tuple[Profile, ...] = ("interoperable", "strict")
Source = Literal["harvested", "configured", "tenant-default"]
KeyKind = Literal["rsa", "ec"]

_CIPHER_LABELS = {
    ContentCipher.AES256_GCM: "AES-256-GCM",
    ContentCipher.AES256_CBC: "AES-256-CBC",
    ContentCipher.AES128_GCM: "AES-128-GCM",
    ContentCipher.AES128_CBC: "AES-128-CBC",
}
_TRANSPORT_LABELS = {
    RsaKeyTransport.RSAES_OAEP_SHA256: "RSAES-OAEP",
    RsaKeyTransport.RSAES_PKCS1_V15: "RSAES-PKCS1-v1_5",
}
_SIGNATURE_LABELS = {
    SignaturePadding.RSASSA_PSS: "RSASSA-PSS",
    SignaturePadding.RSASSA_PKCS1_V15: "RSASSA-PKCS1-v1_5",
}
_CIPHER_SETTINGS = {"aes256-gcm": ContentCipher.AES256_GCM, "aes256-cbc": ContentCipher.AES256_CBC}
_TRANSPORT_SETTINGS = {"rsaes-oaep": RsaKeyTransport.RSAES_OAEP_SHA256,
                       "rsaes-pkcs1v15": RsaKeyTransport.RSAES_PKCS1_V15}
SIGNATURE_SETTINGS = {"rsa-pss": SignaturePadding.RSASSA_PSS,
                      "rsa-pkcs1v15": SignaturePadding.RSASSA_PKCS1_V15}


@attrs.frozen(kw_only=True)
class RecipientAlgorithms:
    """``[settings.smime.recipients."<address or domain>"]``: what that partner's program reads."""

    #: "aes256-gcm" (AuthEnvelopedData) or "aes256-cbc" (EnvelopedData).
    content_cipher: Literal["aes256-gcm", "aes256-cbc"]
    #: RSA keys: "rsaes-oaep" or "rsaes-pkcs1v15".
    rsa_key_transport: Literal["rsaes-oaep", "rsaes-pkcs1v15"] = "rsaes-oaep"
    #: Our RSA signature for this partner; None: the tenant's ``rsa_signature``.
    rsa_signature: Literal["rsa-pss", "rsa-pkcs1v15"] | None = None


@attrs.frozen(kw_only=True)
class AlgorithmChoice:
    """The algorithms one recipient gets, and why."""

    content_cipher: ContentCipher
    key_kind: KeyKind
    rsa_key_transport: RsaKeyTransport
    signature: SignaturePadding
    #: The tenant's signing key: RSA (``signature`` applies), EC (ECDSA) or None (not signing).
    signer: KeyKind | None = "rsa"
    source: Source
    #: Why, for ``siegel explain``, ``queue show`` and ``certs show``.
    why: Text

    @property
    def label(self) -> str:
        """e.g. ``AES-256-CBC, RSAES-PKCS1-v1_5, RSASSA-PSS`` (``unsigned`` when not signing)."""
        return self._label("unsigned")

    def _label(self, unsigned: str) -> str:
        transport = (_TRANSPORT_LABELS[self.rsa_key_transport] if self.key_kind == "rsa"
                     else "ECDH")
        signature = {"rsa": _SIGNATURE_LABELS[self.signature], "ec": "ECDSA",
                     None: unsigned}[self.signer]
        return f"{_CIPHER_LABELS[self.content_cipher]}, {transport}, {signature}"

    @property
    def tr02102_deviations(self) -> tuple[Text, ...]:
        """Where this choice departs from BSI TR-02102-1, so the authority decides knowingly."""
        deviations = []
        if self.key_kind == "rsa" and self.rsa_key_transport is RsaKeyTransport.RSAES_PKCS1_V15:
            deviations.append(Text(de="RSAES-PKCS1-v1_5 statt RSAES-OAEP (TR-02102-1: nicht mehr "
                                   "empfohlen)",
                                   en="RSAES-PKCS1-v1_5 instead of RSAES-OAEP (TR-02102-1: no longer "
                                   "recommended)"))
        if not self.content_cipher.authenticated:
            deviations.append(Text(de="AES-CBC ohne Integritätsschutz der Verschlüsselung (nur die "
                                   "Signatur schützt den Inhalt)",
                                   en="AES-CBC without integrity protection of the encryption (only "
                                   "the signature protects the content)"))
        if self.signer == "rsa" and self.signature is SignaturePadding.RSASSA_PKCS1_V15:
            deviations.append(Text(de="RSASSA-PKCS1-v1_5-Signatur statt RSASSA-PSS",
                                   en="RSASSA-PKCS1-v1_5 signature instead of RSASSA-PSS"))
        return tuple(deviations)

    def describe(self) -> Text:
        """``algorithms: AES-256-GCM, RSAES-OAEP, RSASSA-PSS (harvested: ...)``."""
        return Text(de=f"Algorithmen: {self._label('unsigniert')} ({self.why.de})",
                    en=f"algorithms: {self.label} ({self.why.en})")


@attrs.frozen
class Declined:
    """The profile cannot promise that the recipient reads S/MIME: the reason, for ``can_serve``."""

    reason: Text


def key_kind(certificate: x509.Certificate) -> KeyKind:
    return "rsa" if isinstance(certificate.public_key(), rsa.RSAPublicKey) else "ec"


def configured_for(recipients: dict[str, RecipientAlgorithms], address: str
                   ) -> tuple[str, RecipientAlgorithms] | None:
    """The entry for ``address`` (exact, case-insensitive), else for its domain."""
    by_key = {key.lower(): (key, value) for key, value in recipients.items()}
    address = address.lower()
    found = by_key.get(address)
    if found is None:
        found = by_key.get(address.rpartition("@")[2])
    return found


def choose_algorithms(
    *,
    profile: Profile,
    key_kind: KeyKind,
    harvested: tuple[str, ...] | None,
    configured: tuple[str, RecipientAlgorithms] | None,
    rsa_signature: SignaturePadding,
    signer: KeyKind | None = "rsa",
) -> AlgorithmChoice | Declined:
    """The algorithms for one recipient, from the strongest evidence there is (module doc)."""
    strict = profile == "strict"
    configured_signature = (SIGNATURE_SETTINGS[configured[1].rsa_signature]
                            if configured is not None and configured[1].rsa_signature else None)
    signature = configured_signature or rsa_signature
    refusal: Text | None = None
    announced = SmimeCapabilities(tuple(Capability(oid) for oid in harvested or ()))
    ciphers = set(announced.content_ciphers)
    if ContentCipher.AES256_GCM in ciphers or ContentCipher.AES256_CBC in ciphers:
        cipher = (ContentCipher.AES256_GCM if ContentCipher.AES256_GCM in ciphers
                  else ContentCipher.AES256_CBC)
        oaep = announced.announces(_asn1.RSAES_OAEP_OID)
        names = ", ".join(entry.name for entry in announced.entries)
        if key_kind == "rsa" and strict and not oaep:
            refusal = Text(de=f"die angekündigten Fähigkeiten ({names}) nennen kein RSAES-OAEP, das "
                           "Profil 'strict' verwendet RSAES-PKCS1-v1_5 nicht",
                           en=f"the announced capabilities ({names}) do not include RSAES-OAEP, and "
                           "the 'strict' profile does not use RSAES-PKCS1-v1_5")
        else:
            return AlgorithmChoice(
                content_cipher=cipher, key_kind=key_kind,
                rsa_key_transport=(RsaKeyTransport.RSAES_OAEP_SHA256 if oaep
                                   else RsaKeyTransport.RSAES_PKCS1_V15),
                signature=signature, signer=signer, source="harvested",
                why=Text(de=f"vom Empfänger in signierter Post angekündigt: {names}",
                         en=f"harvested from the recipient's signed mail: {names}"))
    if configured is not None:
        key, entry = configured
        return AlgorithmChoice(
            content_cipher=_CIPHER_SETTINGS[entry.content_cipher], key_kind=key_kind,
            rsa_key_transport=_TRANSPORT_SETTINGS[entry.rsa_key_transport],
            signature=signature, signer=signer, source="configured",
            why=Text(de=f"eingestellt für {key}", en=f"configured for {key}"))
    if refusal is not None:
        return Declined(refusal)
    if strict:
        return Declined(Text(
            de="Profil 'strict': nicht bekannt, ob das Programm des Empfängers AES-256 mit "
            "RSAES-OAEP/ECDH lesen kann (keine signierte Post mit Fähigkeiten, keine Einstellung)",
            en="profile 'strict': not known whether the recipient's program reads AES-256 with "
            "RSAES-OAEP/ECDH (no signed mail announcing capabilities, no setting)"))
    if key_kind == "ec":
        return Declined(Text(
            de="Profil 'interoperable': ein EC-Zertifikat braucht ECDH, das NSS 3.87 (Thunderbird) "
            "und gpgsm 2.2 nicht entschlüsseln (gemessen); keine signierte Post mit Fähigkeiten "
            "und keine Einstellung sagt, dass das Programm des Empfängers es kann",
            en="profile 'interoperable': an EC certificate needs ECDH, which NSS 3.87 (Thunderbird) "
            "and gpgsm 2.2 do not decrypt (measured); no signed mail announcing capabilities and "
            "no setting says that the recipient's program does"))
    return AlgorithmChoice(
        content_cipher=ContentCipher.AES256_CBC, key_kind=key_kind,
        rsa_key_transport=RsaKeyTransport.RSAES_PKCS1_V15, signature=signature, signer=signer,
        source="tenant-default",
        why=Text(de="Profil 'interoperable' für Empfänger ohne bekannte Fähigkeiten",
                 en="profile 'interoperable' for recipients whose capabilities are unknown"))


__all__ = [
    "PROFILES",
    "SIGNATURE_SETTINGS",
    "AlgorithmChoice",
    "Declined",
    "Profile",
    "RecipientAlgorithms",
    "choose_algorithms",
    "configured_for",
    "key_kind",
]
