"""The ``smime`` plugin: S/MIME 4.0 protection for recipients with a usable certificate, inbound
decryption and signature checks for the tenant's own addresses, and ``siegel certs``.

Outgoing: signed by the tenant (RSA-PSS or ECDSA), then encrypted for the recipient's certificate
from the directory (looked up in LDAP when ``ldap_url`` is set and none stored is usable, see
:mod:`.ldap`) with the algorithms chosen for that recipient from evidence (harvested
capabilities, ``recipients`` setting, the tenant's ``profile``; see :mod:`.profiles`). Where no
usable certificate exists or the profile cannot promise that the recipient reads S/MIME,
``can_serve`` says why and the tenant's next method is tried; never plain text.

Inbound: mail for the tenant's own addresses that is encrypted or signed is decrypted and verified
before classification; the result goes into ``X-Siegel-SMIME`` headers the clerk can see. Which
header fields the clerk sees follows :mod:`.inbound` (``X-Siegel-*`` only from siegel, one of
each single-instance field, signed inner fields win only with a valid signature). The signer's
certificate and capabilities from a valid signature are harvested into the directory.
"""

from __future__ import annotations

import re
import ssl
import weakref
from pathlib import Path
from typing import Any, Literal

import attrs
import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from siegel import (
    Availability,
    ConfigPath,
    ConfigSection,
    Outgoing,
    Protected,
    ProtectionMethod,
    RecipientContext,
    Resource,
    Services,
    SettingError,
    Text,
    Transformer,
    hookimpl,
    mime,
    parse_email,
)

from .algorithms import RsaKeyTransport
from .certs_cli import config_directory_opener, register_certs_command
from .directory import CertificateDirectory, harvest
from .envelope import EncryptOptions
from .errors import SmimeError
from .inbound import merge as merge_inbound
from .keys import PrivateKey
from .ldap import LDAP_CACHE_NAMESPACE, LdapCertificateSource, LdapConfig, read_password_file
from .mime import PKCS7_MIME_TYPES, assemble_message, body_part, encrypt_entity, sign_and_encrypt_entity
from .mime import unwrap as unwrap_smime
from .policy import SmimeDirectorySettings, policy_from_settings
from .profiles import (
    PROFILES,
    SIGNATURE_SETTINGS,
    AlgorithmChoice,
    Declined,
    Profile,
    RecipientAlgorithms,
    choose_algorithms,
    configured_for,
    key_kind,
)
from .records import Selection
from .signing import SignOptions

SECTION = "smime"
STATUS_HEADER = "X-Siegel-SMIME"
SIGNER_HEADER = "X-Siegel-SMIME-Signer"


@attrs.frozen
class Identity:
    """The tenant's own key and certificate (with the chain to send along)."""

    key: PrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


def _read(path: ConfigPath, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingError(key, f"{path}: cannot read: {exc.strerror or exc}") from None


def load_identity(settings: SmimeSettings) -> Identity | None:
    password = (_read(settings.password_file, "password_file").strip()
                if settings.password_file else None)
    if settings.pkcs12:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(
                _read(settings.pkcs12, "pkcs12"), password)
        except ValueError as exc:
            raise SettingError("pkcs12", f"{settings.pkcs12}: cannot open: {exc}") from None
        if key is None or cert is None:
            raise SettingError("pkcs12", f"{settings.pkcs12} holds no key and certificate")
        return Identity(key, cert, tuple(extra or ()))  # type: ignore[arg-type]
    if settings.certificate or settings.private_key:
        if not (settings.certificate and settings.private_key):
            raise SettingError("certificate", "certificate and private_key go together")
        try:
            certs = x509.load_pem_x509_certificates(_read(settings.certificate, "certificate"))
        except ValueError as exc:
            raise SettingError("certificate", f"{settings.certificate}: {exc}") from None
        try:
            key = serialization.load_pem_private_key(
                _read(settings.private_key, "private_key"), password)
        except (ValueError, TypeError) as exc:
            raise SettingError("private_key", f"{settings.private_key}: {exc}") from None
        return Identity(key, certs[0], tuple(certs[1:]))  # type: ignore[arg-type]
    return None


@attrs.frozen(kw_only=True)
class SmimeSettings(SmimeDirectorySettings):
    """``[settings.smime]``: the certificate directory (see :class:`SmimeDirectorySettings`), the
    tenant's own identity, and the encryption policy."""

    #: The tenant's key and certificate: a PKCS#12 file, or PEM files (certificate first, chain
    #: after it). ``password_file`` holds the PKCS#12 or key password.
    pkcs12: ConfigPath | None = None
    certificate: ConfigPath | None = None
    private_key: ConfigPath | None = None
    password_file: ConfigPath | None = None
    #: Sign outgoing mail (then encrypt). Needs the identity.
    sign: bool = True
    #: RSA signatures: "rsa-pss" (TR-02102-1) or "rsa-pkcs1v15" for old clients.
    rsa_signature: Literal["rsa-pss", "rsa-pkcs1v15"] = "rsa-pss"
    #: The rule for recipients nothing is known about (see :mod:`.profiles`): "interoperable"
    #: (AES-256-CBC, RSAES-PKCS1-v1_5 for RSA keys: OpenSSL, NSS/Thunderbird, gpgsm and Outlook
    #: read it) or "strict" (TR-02102-1 algorithms only where the recipient is known to read
    #: them; otherwise the next protection method serves).
    profile: Profile = "interoperable"
    #: What a partner's program reads, per address or domain (the administrator's knowledge);
    #: harvested capabilities still win.
    recipients: dict[str, RecipientAlgorithms] = attrs.field(factory=dict)
    #: "keep" the subject outside the encryption, or "neutral": the whole message (headers too)
    #: travels inside the encryption and the outer subject says nothing.
    subject: Literal["keep", "neutral"] = "keep"
    #: Decrypt and verify S/MIME mail arriving for the tenant's own addresses.
    inbound: bool = True
    #: LDAP directory asked for a recipient's certificates when none stored is usable
    #: (see :mod:`.ldap`): "ldaps://host" or "ldap://host" (StartTLS); None: no lookups.
    ldap_url: str | None = None
    #: Where to search (subtree), e.g. "ou=people,dc=behoerde,dc=example".
    ldap_base_dn: str | None = None
    #: ``{address}`` is replaced by the recipient's address, escaped (RFC 4515).
    ldap_filter: str = "(mail={address})"
    #: Simple bind as this DN with the password in ``ldap_password_file``; None: anonymous.
    ldap_bind_dn: str | None = None
    ldap_password_file: ConfigPath | None = None
    #: CA certificates (PEM) the LDAP server's TLS certificate must chain to; None: the system's.
    ldap_ca_file: ConfigPath | None = None
    #: ``ldap://`` URLs: StartTLS, required. False: plain LDAP (loopback only, unless
    #: ``ldap_allow_plaintext``).
    ldap_starttls: bool = True
    #: Allow plain LDAP to a host that is not loopback (only on a trusted network segment).
    ldap_allow_plaintext: bool = False
    #: The whole lookup (connect, TLS, bind, search) must finish within this; keep it well below
    #: ``[delivery] protect_timeout_seconds``.
    ldap_timeout_seconds: float = 5.0
    #: How long found certificates and "no certificate there" are believed before asking again.
    ldap_cache_seconds: float = 3600.0
    ldap_negative_cache_seconds: float = 300.0
    _identity: Identity | None = attrs.field(init=False, repr=False, eq=False, default=None)
    _ldap: LdapConfig | None = attrs.field(init=False, repr=False, eq=False, default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        identity = load_identity(self)
        if identity is None and self.sign:
            raise SettingError("sign", "signing needs the tenant's key: set pkcs12, or certificate "
                                       "and private_key (or sign = false)")
        object.__setattr__(self, "_identity", identity)
        if self.profile not in PROFILES:
            raise SettingError("profile", f"must be one of {', '.join(map(repr, PROFILES))}, "
                                          f"not {self.profile!r}")
        for key in self.recipients:
            if not key or key != key.strip() or key.count("@") > 1:
                raise SettingError(f"recipients.{key}", "must be an address or a domain")
        object.__setattr__(self, "_ldap", self._ldap_config())

    def _ldap_config(self) -> LdapConfig | None:
        if self.ldap_url is None:
            for key in ("ldap_base_dn", "ldap_bind_dn", "ldap_password_file", "ldap_ca_file"):
                if getattr(self, key) is not None:
                    raise SettingError(key, "has no effect without ldap_url")
            return None
        if self.ldap_ca_file is not None:
            try:
                ssl.create_default_context(cafile=self.ldap_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise SettingError("ldap_ca_file", f"{self.ldap_ca_file}: cannot use: {exc}") from None
        return LdapConfig(
            url=self.ldap_url, base_dn=self.ldap_base_dn or "", filter=self.ldap_filter,
            bind_dn=self.ldap_bind_dn,
            password=(read_password_file(self.ldap_password_file)
                      if self.ldap_password_file is not None else None),
            ca_file=self.ldap_ca_file, starttls=self.ldap_starttls,
            allow_plaintext=self.ldap_allow_plaintext, timeout_seconds=self.ldap_timeout_seconds,
            cache_seconds=self.ldap_cache_seconds,
            negative_cache_seconds=self.ldap_negative_cache_seconds)

    @property
    def identity(self) -> Identity | None:
        return self._identity

    @property
    def ldap(self) -> LdapConfig | None:
        """The LDAP lookup, validated; None when ``ldap_url`` is not set."""
        return self._ldap

    def encrypt_options(self, choice: AlgorithmChoice) -> EncryptOptions:
        return EncryptOptions(
            content_cipher=choice.content_cipher, rsa_key_transport=choice.rsa_key_transport,
            allow_rsa_pkcs1v15=choice.rsa_key_transport is RsaKeyTransport.RSAES_PKCS1_V15,
            min_rsa_bits=self.minimum_rsa_bits if not self.allow_weak_rsa else 2048)

    def sign_options(self, choice: AlgorithmChoice | None = None) -> SignOptions:
        return SignOptions(rsa_padding=choice.signature if choice is not None
                           else SIGNATURE_SETTINGS[self.rsa_signature])

    def choose_algorithms(self, address: str, certificate: x509.Certificate,
                          harvested: tuple[str, ...] | None) -> AlgorithmChoice | Declined:
        """The algorithms ``address`` gets for ``certificate``, and why (:mod:`.profiles`)."""
        return choose_algorithms(
            profile=self.profile, key_kind=key_kind(certificate), harvested=harvested,
            configured=configured_for(self.recipients, address),
            rsa_signature=SIGNATURE_SETTINGS[self.rsa_signature],
            signer=(key_kind(self._identity.certificate)
                    if self.sign and self._identity is not None else None))


class Directories:
    """The certificate directories of the running gateways, one per gateway (its
    :class:`~siegel.Services`) and tenant, so that revocation answers and LDAP lookups are cached
    while it runs. Registered as the resource ``smime-directories``, whose stop forgets them (an
    LDAP lookup opens and closes its connection itself, so none is left open): a gateway started
    again begins with fresh directories."""

    def __init__(self) -> None:
        self._open: weakref.WeakKeyDictionary[Any, dict[str, CertificateDirectory]] = (
            weakref.WeakKeyDictionary())

    def directory(self, services: Services, tenant_id: str,
                  settings: SmimeSettings) -> CertificateDirectory:
        per_services = self._open.setdefault(services, {})
        directory = per_services.get(tenant_id)
        if directory is None:
            ldap = settings.ldap
            lookup = (LdapCertificateSource(ldap, services.state(LDAP_CACHE_NAMESPACE),
                                            services.clock)
                      if ldap is not None else None)
            directory = CertificateDirectory.from_services(
                services, policy_from_settings(settings), lookup=lookup)
            per_services[tenant_id] = directory
        return directory

    def __len__(self) -> int:
        """How many directories are open (over every gateway and tenant)."""
        return sum(len(per_services) for per_services in list(self._open.values()))

    async def stop(self) -> None:
        self._open.clear()

    def resource(self) -> Resource:
        return Resource(name="smime-directories", stop=self.stop,
                        description="the tenants' certificate directories and their caches")


DIRECTORIES = Directories()


def directory_for(services: Services, tenant_id: str, settings: SmimeSettings) -> CertificateDirectory:
    """One directory per running gateway and tenant, so revocation answers are cached; with the
    tenant's LDAP lookup when ``ldap_url`` is set."""
    return DIRECTORIES.directory(services, tenant_id, settings)


def _join(first: Text, second: Text) -> Text:
    return Text(de=f"{first.de}; {second.de}", en=f"{first.en}; {second.en}")


async def _choose(ctx: RecipientContext, settings: SmimeSettings, directory: CertificateDirectory
                  ) -> tuple[Selection, AlgorithmChoice | Declined | None]:
    selection = await directory.find_usable(ctx.recipient)
    best = selection.best
    if best is None:
        return selection, None
    return selection, settings.choose_algorithms(selection.address, best.certificate,
                                                 selection.capabilities)


async def can_serve(ctx: RecipientContext) -> Availability:
    """Yes with the certificate and the algorithms and why; no when no certificate is usable or
    the profile cannot promise that the recipient reads S/MIME."""
    settings: SmimeSettings = ctx.settings(SECTION)
    selection, choice = await _choose(ctx, settings,
                                      directory_for(ctx.services, ctx.tenant.id, settings))
    if choice is None:
        return selection.availability()
    if isinstance(choice, Declined):
        return Availability.no(_join(selection.reason, choice.reason))
    return Availability.yes(_join(selection.reason, choice.describe()))


async def protect(ctx: RecipientContext) -> Protected:
    settings: SmimeSettings = ctx.settings(SECTION)
    directory = directory_for(ctx.services, ctx.tenant.id, settings)
    selection, choice = await _choose(ctx, settings, directory)
    best = selection.best
    if best is None or not isinstance(choice, AlgorithmChoice):
        # can_serve said yes a moment ago; fail closed
        raise SmimeError(choice.reason.en if isinstance(choice, Declined) else selection.reason.en)
    if settings.subject == "neutral":
        inner = ctx.raw
        entity: bytes | Any = b"Content-Type: message/rfc822\r\n\r\n" + mime_crlf(inner)
    else:
        entity = body_part(ctx.email)
    identity = settings.identity
    signed = settings.sign and identity is not None
    if signed and identity is not None:
        protected_entity = sign_and_encrypt_entity(
            entity, identity.key, identity.certificate, [best.certificate], identity.chain,
            sign_options=settings.sign_options(choice),
            encrypt_options=settings.encrypt_options(choice))
    else:
        protected_entity = encrypt_entity(entity, [best.certificate],
                                          options=settings.encrypt_options(choice))
    headers = ctx.email
    if settings.subject == "neutral":
        headers = parse_email(ctx.raw)
        del headers["Subject"]
        headers["Subject"] = Text(de=f"Verschlüsselte Nachricht von {ctx.tenant.name}",
                                  en=f"Encrypted message from {ctx.tenant.name}").get(ctx.tenant.language)
    raw = assemble_message(headers, protected_entity)
    await directory.mark_used(ctx.recipient, best.fingerprint)
    what = choice.describe()
    return Protected(
        outgoing=[Outgoing(channel=ctx.tenant.delivery_channel,
                           mail_from=str(ctx.message.envelope.mail_from or ""),
                           recipients=[str(ctx.recipient)], raw=raw)],
        reason=Text(de="mit S/MIME verschlüsselt" + (" und signiert" if signed else "")
                    + f"; {what.de}",
                    en="encrypted with S/MIME" + (" and signed" if signed else "") + f"; {what.en}"))


def mime_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _is_smime(ctx: RecipientContext) -> bool:
    content_type = ctx.email.get_content_type()
    return content_type in PKCS7_MIME_TYPES or (
        content_type == "multipart/signed"
        and "pkcs7-signature" in str(ctx.email.get_param("protocol", "")))


async def inbound(ctx: RecipientContext) -> bytes | None:
    """Decrypt and verify S/MIME for the tenant's own addresses; record the result in headers.

    The delivered header block follows :mod:`.inbound`: ``X-Siegel-*`` fields come only from
    siegel, and signed inner fields win over the outer ones only with a valid signature."""
    settings: SmimeSettings | None = ctx.tenant.settings.get(SECTION)
    if settings is None or not settings.inbound:
        return None
    raw = mime.RawMessage(ctx.raw)
    forged = raw.remove(STATUS_HEADER) + raw.remove(SIGNER_HEADER)
    if ctx.tenant.own_domains.match(ctx.recipient.domain) is None or not _is_smime(ctx):
        return raw.to_bytes() if forged else None
    # An S/MIME message from outside: no X-Siegel-* field of its own survives, decrypted or not.
    for name in {key.lower() for key in ctx.email if key.lower().startswith("x-siegel-")}:
        raw.remove(name)
    identity = settings.identity
    try:
        unwrapped = unwrap_smime(
            raw.to_bytes(), private_key=identity.key if identity else None,
            certificate=identity.certificate if identity else None,
            trust_roots=settings.anchors, at=ctx.services.clock.now())
    except (SmimeError, ValueError) as exc:
        # Cannot decrypt or verify: the copy goes on as it came (ciphertext stays ciphertext),
        # marked so that the clerk knows.
        raw.replace(STATUS_HEADER, f"not verified: {str(exc)[:300]}")
        return raw.to_bytes()
    status = ["decrypted" if unwrapped.encrypted else "not encrypted"]
    signature = unwrapped.signature
    fields: list[tuple[str, str]] = []
    if signature is not None:
        status.append("signature valid")
        signer = ", ".join(signature.signer_emails) or signature.signer.subject.rfc4514_string()
        fields.append((SIGNER_HEADER, _ascii(signer)))
        directory = directory_for(ctx.services, ctx.tenant.id, settings)
        await harvest(directory, signature.signer, signature.chain, signature.capabilities,
                      signature.signing_time or ctx.services.clock.now())
    else:
        status.append("not signed")
    delivered = merge_inbound(
        ctx.raw, unwrapped.entity, signed=signature is not None,
        signer_addresses=signature.signer_emails if signature is not None else ())
    return delivered.with_status([(STATUS_HEADER, "; ".join([*status, *delivered.notes])),
                                  *fields])


def _ascii(text: str) -> str:
    """A header value siegel writes: ASCII, no line breaks, bounded."""
    return re.sub(r"[^ -~]", "?", text)[:300]


@hookimpl
def siegel_register_config_sections() -> list[ConfigSection]:
    return [ConfigSection(name=SECTION, type=SmimeSettings,
                          description="S/MIME: certificate directory, the tenant's identity, policy")]


@hookimpl
def siegel_register_protection_methods() -> list[ProtectionMethod]:
    return [ProtectionMethod(name="smime", can_serve=can_serve, protect=protect,
                             description="S/MIME 4.0: signed, then encrypted (AES-256-GCM/CBC)")]


@hookimpl
def siegel_register_transformers() -> list[Transformer]:
    return [Transformer(name="smime_inbound", transform=inbound,
                        description="Decrypts and verifies S/MIME for the tenant's own addresses")]


@hookimpl
def siegel_register_resources() -> list[Resource]:
    return [DIRECTORIES.resource()]


@hookimpl
def siegel_register_commands(cli: click.Group) -> None:
    register_certs_command(cli, config_directory_opener(SECTION))
