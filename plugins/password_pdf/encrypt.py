"""AES-256 PDF encryption (PDF 2.0 standard security handler, revision 6) without keeping
the recipient's password.

The recipient chooses a password once (in the portal). :func:`derive_recipient_key` turns
it into a :class:`RecipientKey`, the caller stores that and forgets the password. Every
later PDF for that recipient is encrypted with :func:`encrypt_pdf` from the stored key
alone:

- ``u_entry`` is the ``/U`` value of ISO 32000-2 (algorithm 8): the password
  hash (algorithm 2.B) with its validation salt and key salt. It goes unchanged into every
  PDF; a reader checks the typed password against it.
- ``ue_key`` is the intermediate key algorithm 2.B derives from the password and the key
  salt. It encrypts each PDF's fresh random file key into ``/UE``.

``ue_key`` opens every PDF made for that recipient without the password: store it
encrypted (the caller's key management), like a password equivalent. ``u_entry`` is a
salted password hash that costs only about 1.5 ms per guess; it is in every PDF anyway,
so the password must be strong.

Each PDF gets a fresh 32-byte file key and a fresh random owner password that is
never returned, so nobody holds owner rights. Strings, streams, embedded files and the
metadata stream are all encrypted with AESV3 (AES-256-CBC).

pyHanko is used for the PDF object model and the per-object encryption. It has no API to
build a revision-6 handler from precomputed ``/U``/``/UE`` values, so this module uses two
private members (``StandardSecurityHandler._shared_key`` in :func:`_security_handler`,
``BasePdfFileWriter._assign_security_handler`` in :func:`protect_writer`); pin pyHanko
exactly (``pyhanko==0.38.0``) and rerun the tests before upgrading.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import stringprep
import struct
import unicodedata
from typing import Final

import attrs
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt import (
    SecurityHandlerVersion,
    StandardSecurityHandler,
    StandardSecuritySettingsRevision,
)
from pyhanko.pdf_utils.crypt.permissions import StandardPermissions
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter, copy_into_new_writer

__all__ = [
    "MAX_PASSWORD_BYTES",
    "RECIPIENT_PERMISSIONS",
    "PasswordRejected",
    "RecipientKey",
    "derive_recipient_key",
    "encrypt_pdf",
    "verify_password",
]

#: What the recipient may do once the PDF is open. They are the data subject, so printing
#: and copying are allowed; these flags are advisory in every viewer anyway. Confidentiality
#: comes from the encryption, not from them.
RECIPIENT_PERMISSIONS: Final = (
    StandardPermissions.ALLOW_PRINTING
    | StandardPermissions.ALLOW_HIGH_QUALITY_PRINTING
    | StandardPermissions.ALLOW_CONTENT_EXTRACTION
    | StandardPermissions.ALLOW_ASSISTIVE_TECHNOLOGY
    # No ISO/TS 32004 MAC is written (mainstream viewers ignore it); say so, otherwise
    # pyHanko-based readers would refuse the file.
    | StandardPermissions.TOLERATE_MISSING_PDF_MAC
)

#: Longest password accepted, in UTF-8 bytes. ISO 32000-2 allows 127, but poppler (Evince,
#: Okular, pdftotext; checked with 22.12) refuses the right password beyond 32 bytes, and a
#: citizen must be able to open the file with whatever viewer they have.
MAX_PASSWORD_BYTES: Final = 32


class PasswordRejected(ValueError):
    """The password cannot be used for PDF encryption; the message says why."""


@attrs.frozen
class RecipientKey:
    """What is stored per recipient instead of the password.

    ``ue_key`` decrypts every PDF made for this recipient: keep it encrypted at rest.
    """

    u_entry: bytes = attrs.field(repr=False)
    ue_key: bytes = attrs.field(repr=False)

    @u_entry.validator
    def _check_u_entry(self, attribute: attrs.Attribute[bytes], value: object) -> None:
        if not isinstance(value, bytes) or len(value) != 48:
            raise ValueError(
                "RecipientKey.u_entry must be 48 bytes (hash, validation salt, key salt)"
            )

    @ue_key.validator
    def _check_ue_key(self, attribute: attrs.Attribute[bytes], value: object) -> None:
        if not isinstance(value, bytes) or len(value) != 32:
            raise ValueError("RecipientKey.ue_key must be 32 bytes")


# ------------------------------------------------------------------ password handling

# RFC 4013 (SASLprep), which ISO 32000-2 § 7.6.4.3.3 prescribes for revision 6 passwords.
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,  # unassigned code points are prohibited in stored strings
)


def _saslprep(password: str) -> str:
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    # stringprep is defined on Unicode 3.2; a newer table would accept characters that
    # other readers reject.
    normalised = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for ch in normalised:
        if any(prohibited(ch) for prohibited in _PROHIBITED):
            raise PasswordRejected(
                f"the password contains a character that PDF passwords may not contain "
                f"(U+{ord(ch):04X}); choose another password"
            )
    if any(stringprep.in_table_d1(ch) for ch in normalised) and (
        any(stringprep.in_table_d2(ch) for ch in normalised)
        or not stringprep.in_table_d1(normalised[0])
        or not stringprep.in_table_d1(normalised[-1])
    ):
        raise PasswordRejected(
            "the password mixes right-to-left and left-to-right text in a way PDF passwords "
            "do not allow; choose another password"
        )
    return normalised


def _password_bytes(password: str) -> bytes:
    """The bytes that are hashed: SASLprep, then UTF-8 (ISO 32000-2 § 7.6.4.3.3)."""
    prepared = _saslprep(password)
    if not prepared:
        raise PasswordRejected("the password is empty")
    # SASLprep-aware viewers (Acrobat, pyHanko) hash the prepared form, others (qpdf,
    # poppler) hash the bytes as typed. Where the two differ beyond composing accents, one
    # group of viewers would refuse the right password: reject such passwords up front.
    if prepared != unicodedata.normalize("NFC", password):
        raise PasswordRejected(
            "the password contains characters that PDF viewers treat differently (for "
            "example special spaces, ligatures, superscripts or full-width letters); "
            "choose a password without them"
        )
    encoded = prepared.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(
            f"the password is {len(encoded)} bytes long; some PDF viewers cannot open files "
            f"with passwords over {MAX_PASSWORD_BYTES} bytes (UTF-8: umlauts and € count "
            f"double or triple); choose a shorter password"
        )
    return encoded


def _aes_cbc_no_iv(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _hash_2b(password: bytes, salt: bytes, u_entry: bytes = b"") -> bytes:
    """Algorithm 2.B, ISO 32000-2 § 7.6.4.3.4 (revision 6 password hash)."""
    k = hashlib.sha256(password + salt + u_entry).digest()
    hashes = (hashlib.sha256, hashlib.sha384, hashlib.sha512)
    round_no = 0
    while True:
        k1 = (password + k + u_entry) * 64
        encryptor = Cipher(algorithms.AES(k[:16]), modes.CBC(k[16:32])).encryptor()
        e = encryptor.update(k1) + encryptor.finalize()
        # First 16 bytes of E as a big-endian number mod 3; 256 = 1 (mod 3), so the byte
        # sum has the same remainder.
        k = hashes[sum(e[:16]) % 3](e).digest()
        round_no += 1
        if round_no >= 64 and e[-1] <= round_no - 32:
            return k[:32]


# ------------------------------------------------------------------------ public API


def derive_recipient_key(password: str) -> RecipientKey:
    """Turn the recipient's password into what is stored instead of it.

    Run once when the recipient sets the password; afterwards discard the password.
    Takes a few milliseconds. Algorithm 2.B costs about 1.5 ms per guess and ``/U`` is in
    every PDF, so the portal must insist on a strong password (length, no dictionary word).

    :raises PasswordRejected: empty, longer than :data:`MAX_PASSWORD_BYTES`, or with
        characters that PDF passwords cannot hold or that viewers treat differently.
    """
    pw = _password_bytes(password)
    validation_salt = secrets.token_bytes(8)
    key_salt = secrets.token_bytes(8)
    u_entry = _hash_2b(pw, validation_salt) + validation_salt + key_salt
    return RecipientKey(u_entry=u_entry, ue_key=_hash_2b(pw, key_salt))


def verify_password(key: RecipientKey, password: str) -> bool:
    """True if ``password`` opens PDFs made with ``key`` (algorithm 11, ISO 32000-2)."""
    try:
        pw = _password_bytes(password)
    except PasswordRejected:
        return False
    return hmac.compare_digest(_hash_2b(pw, key.u_entry[32:40]), key.u_entry[:32])


def _perms_entry(file_key: bytes, permissions: StandardPermissions) -> bytes:
    """``/Perms`` (algorithm 10): P as little-endian, 0xFFFFFFFF, 'T' (metadata encrypted),
    'adb', 4 random bytes; AES-256-ECB under the file key."""
    block = (
        struct.pack("<I", permissions.as_uint32())
        + b"\xff\xff\xff\xff"
        + b"Tadb"
        + secrets.token_bytes(4)
    )
    # ECB on a single block, as the spec mandates.
    encryptor = Cipher(algorithms.AES(file_key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def _security_handler(key: RecipientKey) -> StandardSecurityHandler:
    file_key = secrets.token_bytes(32)
    owner_pw = secrets.token_urlsafe(32).encode("ascii")  # 256 bits, never leaves here
    o_validation_salt = secrets.token_bytes(8)
    o_key_salt = secrets.token_bytes(8)
    o_entry = _hash_2b(owner_pw, o_validation_salt, key.u_entry) + o_validation_salt + o_key_salt
    handler = StandardSecurityHandler(
        version=SecurityHandlerVersion.AES256,
        revision=StandardSecuritySettingsRevision.AES256,
        legacy_keylen=32,
        perm_flags=RECIPIENT_PERMISSIONS,
        odata=o_entry,
        udata=key.u_entry,
        oeseed=_aes_cbc_no_iv(_hash_2b(owner_pw, o_key_salt, key.u_entry), file_key),
        ueseed=_aes_cbc_no_iv(key.ue_key, file_key),
        encrypted_perms=_perms_entry(file_key, RECIPIENT_PERMISSIONS),
        encrypt_metadata=True,
    )
    # PRIVATE pyHanko member (checked against pyhanko==0.38.0): `_shared_key` is the file
    # encryption key. build_from_pw() sets it the same way after calling this constructor;
    # there is no public way to hand over a key when /U and /UE come from outside.
    handler._shared_key = file_key
    if handler.get_file_encryption_key() != file_key:  # public read-back of the above
        raise RuntimeError(
            "pyHanko no longer takes the file key through StandardSecurityHandler._shared_key;"
            " pin pyhanko==0.38.0 or adapt siegel.plugins.password_pdf.encrypt"
        )
    return handler


_ACTION_KEYS: Final = ("/OpenAction", "/AA")


def _strip_actions(writer: BasePdfFileWriter) -> None:
    """Remove document/page/annotation actions and document JavaScript.

    render_message() never writes any; this guards PDFs that come from elsewhere.
    """
    root = writer.root
    for action_key in _ACTION_KEYS:
        root.pop(action_key, None)
    names = root.get("/Names")
    if isinstance(names, generic.DictionaryObject):
        names.pop("/JavaScript", None)
    for page_ref in _page_refs(root["/Pages"]):
        page = page_ref.get_object()  # type: ignore[no-untyped-call]  # pyHanko is untyped
        page.pop("/AA", None)
        for annot in page.get("/Annots", generic.ArrayObject()):
            annot_dict = annot.get_object()
            if isinstance(annot_dict, generic.DictionaryObject):
                annot_dict.pop("/A", None)
                annot_dict.pop("/AA", None)


def _page_refs(node: generic.PdfObject) -> list[generic.PdfObject]:
    found: list[generic.PdfObject] = []
    pending = [node]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        obj = current.get_object()  # type: ignore[no-untyped-call]
        if id(obj) in seen or not isinstance(obj, generic.DictionaryObject):
            continue
        seen.add(id(obj))
        if obj.get("/Type") == "/Pages":
            pending.extend(reversed(obj.get("/Kids", generic.ArrayObject())))
        else:
            found.append(current)
    return found


def protect_writer(writer: BasePdfFileWriter, key: RecipientKey) -> None:
    """Strip actions and attach a fresh revision-6 handler; internal to this package."""
    _strip_actions(writer)
    # PRIVATE pyHanko member (checked against pyhanko==0.38.0): PdfFileWriter.encrypt()
    # only accepts passwords; `_assign_security_handler` is what it and
    # embed.wrap_encrypted_payload() call to attach a ready-made handler (it registers the
    # /Encrypt dictionary and raises the output version to PDF 2.0).
    writer._assign_security_handler(_security_handler(key))


def serialise(writer: BasePdfFileWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]  # pyHanko is untyped
    return out.getvalue()


def encrypt_pdf(pdf: bytes, key: RecipientKey) -> bytes:
    """Encrypt ``pdf`` so that the recipient's password opens it.

    A fresh file key and a fresh, discarded owner password for every call; ``/U`` is
    ``key.u_entry`` so the same password opens every PDF made with ``key``. Document,
    page and annotation actions and document JavaScript are removed.

    :raises ValueError: if ``pdf`` is already encrypted or cannot be parsed.
    """
    try:
        reader = PdfFileReader(io.BytesIO(pdf))
    except Exception as exc:  # pyHanko raises several unrelated types for broken input
        raise ValueError(f"encrypt_pdf: input is not a readable PDF ({exc})") from exc
    if reader.encrypted:
        raise ValueError("encrypt_pdf: input is already encrypted; pass the plain PDF")
    writer = copy_into_new_writer(reader)
    del reader
    protect_writer(writer, key)
    return serialise(writer)
