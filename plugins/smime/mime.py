"""S/MIME MIME wrapping (RFC 8551 3): multipart/signed and application/pkcs7-mime entities.

Building works on canonical bytes: an :class:`~email.message.EmailMessage` body part is serialized
once with CRLF line endings, and exactly those bytes are signed and placed into the
multipart/signed entity. Re-serializing a signed part through the ``email`` package could refold
headers or re-encode the body and break the signature, so every builder returns ``bytes``.

Parsing takes the raw bytes as received (a complete message or just the entity) and splits the
multipart/signed body at its boundaries without re-encoding, so the signed part is verified
byte for byte.

Typical use::

    entity = sign_and_encrypt_entity(body_part(message), key, cert, [recipient_cert])
    outgoing = assemble_message(message, entity)

    result = unwrap(incoming, private_key=key, certificate=cert, trust_roots=roots)
    result.message(), result.envelope, result.signature
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import email.policy
import itertools
import re
import secrets
import struct
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.parser import BytesParser
from io import BytesIO

import attrs
from asn1crypto import cms
from cryptography import x509

from .envelope import (
    DecryptedEnvelope,
    EncryptOptions,
    encrypt,
    open_envelope,
)
from .errors import MalformedError, UnsupportedError
from .keys import PrivateKey
from .signing import SignOptions, sign
from .verification import VerifiedSignature, verify

SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
PKCS7_MIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_CRLF = b"\r\n"
_MAX_LAYERS = 4  # sign, encrypt, sign (triple wrapping) and one spare
_BASE64_LINE = 76
_BASE64_BLOCK_LINES = 64
_ENCODED_BLOCK = struct.Struct(f"{_BASE64_LINE}s" * _BASE64_BLOCK_LINES)
_FOLDED_BLOCK = struct.Struct(f"{_BASE64_LINE}s2x" * _BASE64_BLOCK_LINES)  # 2 pad bytes: CR LF
_LINE_ENDING = re.compile(rb"\r*\n")


@attrs.frozen(kw_only=True)
class UnwrappedEntity:
    """The result of :func:`unwrap`: the innermost entity and the protections removed."""

    entity: bytes = attrs.field(repr=False)
    """The innermost MIME entity, canonical CRLF (headers and body)."""
    envelopes: tuple[DecryptedEnvelope, ...] = ()
    """Encryption layers removed, outermost first."""
    signatures: tuple[VerifiedSignature, ...] = ()
    """Verified signature layers, outermost first."""

    @property
    def encrypted(self) -> bool:
        return bool(self.envelopes)

    @property
    def signature(self) -> VerifiedSignature | None:
        """The innermost signature, which covers the content itself (or None)."""
        return self.signatures[-1] if self.signatures else None

    def message(self) -> EmailMessage:
        """The innermost entity parsed as an :class:`~email.message.EmailMessage`."""
        return _parse(self.entity)


@attrs.frozen(kw_only=True)
class SignedEntity:
    """The result of :func:`verify_signed_entity`."""

    content: bytes = attrs.field(repr=False)
    """The signed first part of the multipart/signed entity, exactly as verified."""
    signature: VerifiedSignature


# --- building ------------------------------------------------------------------------------------


def canonicalize(data: bytes) -> bytes:
    """Line endings to CRLF, the canonical form of RFC 8551 3.1.1.

    Like openssl's canonicalization, every LF with the CRs before it becomes one CRLF; a CR in
    the middle of a line is left alone.
    """
    if type(data) is bytes:
        # Fast paths giving exactly what the substitution gives, with C-speed scans instead of a
        # regex pass over the whole message (single-byte membership tests use memchr).
        if b"\n" not in data:
            return data
        if b"\r" not in data:
            return data.replace(b"\n", _CRLF)
        # Already canonical: every LF follows exactly one CR.
        if data.count(b"\n") == data.count(_CRLF) and b"\r\r\n" not in data:
            return data
    return _LINE_ENDING.sub(_CRLF, data)


def entity_bytes(part: EmailMessage | bytes) -> bytes:
    """Serialize a MIME entity once, with CRLF line endings; bytes are only canonicalized.

    Serialize 8-bit content with a 7-bit transfer encoding (quoted-printable or base64) before
    *clear*-signing it, because mail relays may alter 8-bit data (RFC 8551 3.1.2); inside an
    encrypted envelope 8-bit content is safe. A multipart part without a boundary gets one
    assigned by the generator, so serializing the same part again gives the same bytes.
    """
    if isinstance(part, bytes):
        return canonicalize(part)
    buffer = BytesIO()
    policy = part.policy.clone(linesep="\r\n")
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(part)
    return canonicalize(buffer.getvalue())


def body_part(message: EmailMessage) -> EmailMessage:
    """A copy of ``message`` with only its Content-* headers: the entity to sign or encrypt.

    The other headers (From, To, Subject, ...) stay outside; put them back with
    :func:`assemble_message`.
    """
    part = copy.deepcopy(message)
    for name in {key.lower() for key in part}:
        if not name.startswith("content-"):
            del part[name]
    return part


def assemble_message(headers_from: EmailMessage, entity: bytes) -> bytes:
    """A complete message: the non-Content-* headers of ``headers_from``, then ``entity``.

    Adds ``MIME-Version: 1.0``; the result has CRLF line endings.
    """
    policy = headers_from.policy.clone(linesep="\r\n")
    headers = b"".join(
        policy.fold_binary(name, value)
        for name, value in headers_from.items()
        if not name.lower().startswith("content-") and name.lower() != "mime-version"
    )
    return headers + b"MIME-Version: 1.0\r\n" + canonicalize(entity)


def sign_entity(
    part: EmailMessage | bytes,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    *,
    options: SignOptions | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """Clear-sign ``part``; returns the ``multipart/signed`` entity (RFC 8551 3.5.3).

    The first body part is ``part`` serialized with :func:`entity_bytes`; the second is the
    detached signature ``smime.p7s``. ``micalg`` names the digest of ``options``.
    """
    return _sign_entity(part, private_key, certificate, chain, options, signing_time)[0]


def _sign_entity(
    part: EmailMessage | bytes,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate],
    options: SignOptions | None,
    signing_time: dt.datetime | None,
) -> tuple[bytes, bytes]:
    """:func:`sign_entity`; returns the multipart/signed entity and the signed content."""
    options = options or SignOptions()
    content = entity_bytes(part)
    signature = sign(
        content, private_key, certificate, chain, options=options, signing_time=signing_time
    )
    boundary = _new_boundary(content)
    delimiter = b"--" + boundary
    header = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b" micalg=" + options.digest.micalg.encode() + b'; boundary="' + boundary + b'"\r\n'
    )
    signature_part = (
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
        b"Content-Description: S/MIME Cryptographic Signature\r\n"
        b"\r\n" + _base64_lines(signature)
    )
    # RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter, not to the part.
    # One join: the content may be large.
    entity = b"".join(
        (
            header,
            _CRLF,
            b"This is a cryptographically signed message in MIME format.\r\n",
            _CRLF,
            delimiter,
            _CRLF,
            content,
            _CRLF,
            delimiter,
            _CRLF,
            signature_part,
            _CRLF,
            delimiter,
            b"--",
            _CRLF,
        )
    )
    return entity, content


def encrypt_entity(
    entity: EmailMessage | bytes,
    recipients: Sequence[x509.Certificate],
    *,
    options: EncryptOptions | None = None,
) -> bytes:
    """Encrypt ``entity``; returns the ``application/pkcs7-mime`` entity ``smime.p7m``.

    ``smime-type`` is ``authEnveloped-data`` for AES-GCM and ``enveloped-data`` for AES-CBC.
    """
    options = options or EncryptOptions()
    return _pkcs7_mime_entity(encrypt(entity_bytes(entity), recipients, options=options), options)


def _pkcs7_mime_entity(der: bytes, options: EncryptOptions) -> bytes:
    smime_type = options.content_cipher.smime_type.encode()
    return _base64_lines(
        der,
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type + b";\r\n"
        b' name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        b"Content-Description: S/MIME Encrypted Message\r\n"
        b"\r\n",
    )


def sign_and_encrypt_entity(
    part: EmailMessage | bytes,
    private_key: PrivateKey,
    certificate: x509.Certificate,
    recipients: Sequence[x509.Certificate],
    chain: Sequence[x509.Certificate] = (),
    *,
    sign_options: SignOptions | None = None,
    encrypt_options: EncryptOptions | None = None,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """Sign ``part`` (multipart/signed), then encrypt the result (application/pkcs7-mime).

    Include the sender's own certificate in ``recipients`` if the sender must be able to read
    the message later.
    """
    signed, content = _sign_entity(
        part, private_key, certificate, chain, sign_options, signing_time
    )
    # encrypt_entity canonicalizes what it encrypts. The multipart/signed entity is assembled
    # from canonical pieces, so that changes it only where content ending with a lone CR meets
    # the CRLF of the next delimiter; skip the pass over the (possibly large) entity otherwise.
    if content.endswith(b"\r"):
        signed = canonicalize(signed)
    options = encrypt_options or EncryptOptions()
    return _pkcs7_mime_entity(encrypt(signed, recipients, options=options), options)


# --- parsing -------------------------------------------------------------------------------------


def verify_signed_entity(
    raw: bytes,
    trust_roots: Sequence[x509.Certificate],
    *,
    at: dt.datetime | None = None,
) -> SignedEntity:
    """Verify a ``multipart/signed`` entity or message given as raw bytes.

    Raises :class:`MalformedError` when ``raw`` is not a well-formed multipart/signed with an
    application/pkcs7-signature part, and the errors of :func:`~.signing.verify`.
    """
    raw = canonicalize(raw)
    headers = _parse_headers(raw)
    if headers.get_content_type() != "multipart/signed":
        raise MalformedError(
            f"expected multipart/signed, got {headers.get_content_type()}",
            where="Content-Type",
        )
    content, signature_part = _split_multipart_signed(raw, headers)
    signature_message = _parse(signature_part)
    if signature_message.get_content_type() not in SIGNATURE_TYPES:
        raise MalformedError(
            f"the second part is {signature_message.get_content_type()}, expected "
            "application/pkcs7-signature",
            where="multipart/signed part 2",
        )
    signature = signature_message.get_payload(decode=True)
    if not isinstance(signature, bytes) or not signature:
        raise MalformedError("the signature part is empty", where="multipart/signed part 2")
    verified = verify(signature, content, trust_roots, at=at)
    return SignedEntity(content=content, signature=verified)


def decrypt_entity(
    raw: bytes, private_key: PrivateKey, certificate: x509.Certificate
) -> DecryptedEnvelope:
    """Decrypt an ``application/pkcs7-mime`` entity or message given as raw bytes.

    ``content`` of the result is the decrypted inner MIME entity, byte for byte.
    """
    message = _parse(raw)
    if message.get_content_type() not in PKCS7_MIME_TYPES:
        raise MalformedError(
            f"expected application/pkcs7-mime, got {message.get_content_type()}",
            where="Content-Type",
        )
    return open_envelope(_pkcs7_payload(message), private_key, certificate)


def unwrap(
    raw: bytes,
    *,
    private_key: PrivateKey | None = None,
    certificate: x509.Certificate | None = None,
    trust_roots: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
) -> UnwrappedEntity:
    """Remove all S/MIME layers of an incoming message (raw bytes, as received).

    Decrypts enveloped ``application/pkcs7-mime`` layers with ``private_key``/``certificate``,
    verifies ``multipart/signed`` and opaque signed-data layers against ``trust_roots``, and
    stops at the first entity that is neither. The CMS content type decides what a pkcs7-mime
    layer is; the ``smime-type`` parameter is not trusted. A message without S/MIME comes back
    unchanged with no envelopes and no signatures; a layer that cannot be removed raises
    (:class:`ValueError` when the key or the trust roots it needs were not given).
    """
    entity = raw
    envelopes: list[DecryptedEnvelope] = []
    signatures: list[VerifiedSignature] = []
    for layer in range(_MAX_LAYERS + 1):
        content_type = _parse_headers(entity).get_content_type()
        if content_type == "multipart/signed":
            _require(bool(trust_roots), "is signed; pass trust_roots to verify it", layer)
            signed = verify_signed_entity(entity, trust_roots, at=at)
            signatures.append(signed.signature)
            entity = signed.content
        elif content_type in PKCS7_MIME_TYPES:
            der = _pkcs7_payload(_parse(entity))
            cms_type = _cms_content_type(der, layer)
            if cms_type == "signed_data":
                _require(bool(trust_roots), "is signed; pass trust_roots to verify it", layer)
                verified = verify(der, None, trust_roots, at=at)
                signatures.append(verified)
                entity = verified.content
            elif cms_type in ("enveloped_data", "authenticated_enveloped_data"):
                if private_key is None or certificate is None:
                    raise ValueError(
                        f"layer {layer} is encrypted; pass private_key and certificate"
                    )
                envelope = open_envelope(der, private_key, certificate)
                envelopes.append(envelope)
                entity = envelope.content
            else:
                raise UnsupportedError(
                    f"application/pkcs7-mime with CMS content type {cms_type} is not supported",
                    where=f"layer {layer}",
                )
        else:
            return UnwrappedEntity(
                entity=entity, envelopes=tuple(envelopes), signatures=tuple(signatures)
            )
    raise MalformedError(f"more than {_MAX_LAYERS} nested S/MIME layers", where="message")


# --- helpers -------------------------------------------------------------------------------------


def _require(condition: bool, message: str, layer: int) -> None:
    if not condition:
        raise ValueError(f"layer {layer} {message}")


def _new_boundary(content: bytes) -> bytes:
    while True:
        boundary = b"----=_siegel_" + secrets.token_hex(16).encode()
        if boundary not in content:
            return boundary


def _base64_lines(data: bytes, prefix: bytes = b"") -> bytes:
    """``prefix``, then ``data`` in base64, lines of 76 characters each ending with CRLF.

    Blocks of 64 lines are folded by :mod:`struct` in C: each 76-character line is packed with two
    pad bytes after it, which then become CR LF by two strided slice assignments. Only the last
    partial block is folded line by line. For a 1 MB message this is about four times faster
    than slicing and joining every line in Python.
    """
    encoded = base64.b64encode(data)
    whole = len(encoded) - len(encoded) % _ENCODED_BLOCK.size
    out = bytearray(prefix)
    if whole:
        start = len(out)
        for block in itertools.starmap(
            _FOLDED_BLOCK.pack, _ENCODED_BLOCK.iter_unpack(memoryview(encoded)[:whole])
        ):
            out += block
        lines = whole // _BASE64_LINE
        out[start + _BASE64_LINE :: _BASE64_LINE + 2] = b"\r" * lines
        out[start + _BASE64_LINE + 1 :: _BASE64_LINE + 2] = b"\n" * lines
    for index in range(whole, len(encoded), _BASE64_LINE):
        out += encoded[index : index + _BASE64_LINE]
        out += _CRLF
    return bytes(out)


def _parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    return message


def _parse_headers(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data, headersonly=True)
    assert isinstance(message, EmailMessage)
    return message


def _split_multipart_signed(raw: bytes, headers: EmailMessage) -> tuple[bytes, bytes]:
    """The signed first part and the signature part of a multipart/signed, byte for byte."""
    protocol = str(headers.get_param("protocol", "") or "").lower()
    if protocol not in SIGNATURE_TYPES:
        raise MalformedError(
            f'multipart/signed with protocol="{protocol}"; only application/pkcs7-signature '
            "(S/MIME) is supported",
            where="Content-Type",
        )
    boundary = headers.get_boundary()
    if not boundary:
        raise MalformedError("multipart/signed without boundary", where="Content-Type")
    separator = raw.find(b"\r\n\r\n")
    if separator < 0:
        raise MalformedError("no empty line between headers and body", where="headers")
    # Keeping the CRLF that ends the header block lets a delimiter at the very start of the
    # body match like all others. RFC 2046 5.1.1: CRLF "--" boundary ["--"] [blanks] CRLF;
    # the leading CRLF belongs to the delimiter, not to the part before it.
    body = raw[separator + 2 :]
    delimiter = re.compile(
        rb"\r\n--"
        + re.escape(boundary.encode("ascii", "surrogateescape"))
        + rb"(--)?[ \t]*(?:\r\n|$)"
    )
    found = list(delimiter.finditer(body))
    if len(found) < 3 or found[0].group(1) or found[1].group(1) or not found[2].group(1):
        raise MalformedError(
            "expected exactly two body parts between the boundaries",
            where="multipart/signed",
        )
    return body[found[0].end() : found[1].start()], body[found[1].end() : found[2].start()]


def _cms_content_type(der: bytes, layer: int) -> str:
    try:
        return str(cms.ContentInfo.load(der)["content_type"].native)
    except (ValueError, TypeError) as exc:
        raise MalformedError(
            f"the application/pkcs7-mime body is not a CMS ContentInfo: {exc}",
            where=f"layer {layer}",
        ) from None


def _pkcs7_payload(message: EmailMessage) -> bytes:
    payload = message.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        raise MalformedError("the application/pkcs7-mime body is empty", where="body")
    return payload


__all__ = [
    "SignedEntity",
    "UnwrappedEntity",
    "assemble_message",
    "body_part",
    "canonicalize",
    "decrypt_entity",
    "encrypt_entity",
    "entity_bytes",
    "sign_and_encrypt_entity",
    "sign_entity",
    "unwrap",
    "verify_signed_entity",
]
