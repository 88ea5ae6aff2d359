"""Reading and minimally editing RFC 5322 messages.

Classifiers read the parsed message; rewriters edit the *raw* header block so that everything they do
not touch stays byte for byte as the sender wrote it (DKIM signatures over other headers survive).
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import email.errors
import email.policy
import quopri
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator
from email.message import EmailMessage
from email.parser import BytesParser

import attrs

from siegel.html_text import html_to_text as html_to_text  # documented here (hooks.rst)
from siegel.model import Text, parse_email
from siegel.readings import (
    BARE_CR,
    encoded_readings,
    lenient_encoded_words,
    payload_bytes,
    plausible_texts,
    unfold_encoded_words,
)

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


class RawMessage:
    """An editable view of a message's header block; the body is never touched."""

    def __init__(self, raw: bytes) -> None:
        match = _HEADER_END.search(raw)
        if match:
            separator = match.group()
            end_of_last_field = b"\r\n" if separator.startswith(b"\r\n") else b"\n"
            head = raw[: match.start()] + end_of_last_field
            self._blank_line: bytes | None = separator[len(end_of_last_field):]
            # A view, not a copy: the body can be most of a large message.
            self._body: bytes | memoryview = memoryview(raw)[match.end():]
        else:
            head, self._blank_line, self._body = raw, None, b""
        self._newline = b"\r\n" if b"\r\n" in raw[: len(head) + 2] else b"\n"
        self._fields = self._split_fields(head)
        self.changed = False

    def _split_fields(self, head: bytes) -> list[bytes]:
        fields: list[bytes] = []
        for line in head.splitlines(keepends=True):
            if fields and line[:1] in (b" ", b"\t"):
                fields[-1] += line
            else:
                fields.append(line)
        return fields

    @staticmethod
    def _name(field: bytes) -> str:
        match = _FIELD_START.match(field)
        return match.group(1).decode("ascii").lower() if match else ""

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        wanted = name.lower()
        kept = [f for f in self._fields if self._name(f) != wanted]
        removed = len(self._fields) - len(kept)
        if removed:
            self._fields = kept
            self.changed = True
        return removed

    def replace(self, name: str, value: str) -> None:
        """Replace the first field called ``name`` (and drop any others) with a new value.

        The value is folded and, where it is not ASCII, encoded as RFC 2047 words.
        """
        folded = email.policy.SMTP.header_factory(name, value).fold(policy=email.policy.SMTP)
        encoded = folded.encode("ascii").replace(b"\r\n", self._newline)
        wanted = name.lower()
        fields: list[bytes] = []
        placed = False
        for field in self._fields:
            if self._name(field) == wanted:
                if not placed:
                    fields.append(encoded)
                    placed = True
            else:
                fields.append(field)
        if not placed:
            fields.insert(0, encoded)
        self._fields = fields
        self.changed = True

    def header_block(self) -> bytes:
        """The (edited) header fields and the blank line that ends them."""
        head = b"".join(self._fields)
        if head and not head.endswith(b"\n"):
            head += self._newline
        return head + (self._newline if self._blank_line is None else self._blank_line)

    def to_bytes(self) -> bytes:
        return b"".join((self.header_block(), self._body))

    def equals(self, data: bytes) -> bool:
        """``data == self.to_bytes()``, without making the copy."""
        head = self.header_block()
        return (len(data) == len(head) + len(self._body) and data.startswith(head)
                and memoryview(data)[len(head):] == self._body)

    def parsed(self, original: EmailMessage) -> EmailMessage:
        """The edited message parsed, given the unedited one parsed: only the header block is
        parsed again and the body is shared with ``original`` (not copied, not parsed twice).
        Where an edit touched how the body is structured or encoded, or the body is 8-bit text,
        all of it is parsed."""
        edited = BytesParser(policy=original.policy).parsebytes(self.header_block(),
                                                                headersonly=True)
        assert isinstance(edited, EmailMessage)
        body = original.get_payload()
        # An 8-bit body comes back from get_payload already decoded, so it cannot be shared.
        if _structure(edited) != _structure(original) or (
                isinstance(body, str) and not body.isascii()):
            return parse_email(self.to_bytes())
        edited.set_payload(body)
        edited.preamble, edited.epilogue = original.preamble, original.epilogue
        edited.defects.extend(original.defects)
        return edited


_STRUCTURE_FIELDS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})


def _structure(message: EmailMessage) -> list[tuple[str, str]]:
    return [(name.lower(), str(value)) for name, value in message.raw_items()
            if name.lower() in _STRUCTURE_FIELDS]


#: Why a part could not be read, by code, for reasons a clerk reads (German, English).
UNREADABLE: dict[str, Text] = {
    "unknown-charset": Text(de="unbekannter Zeichensatz", en="unknown charset"),
    "unknown-transfer-encoding": Text(de="unbekannte Transferkodierung",
                                      en="unknown transfer encoding"),
    "undecodable": Text(de="Transferkodierung nicht dekodierbar", en="undecodable transfer encoding"),
    "truncated": Text(de="abgeschnitten", en="truncated"),
    "not-understood": Text(de="Aufbau nicht verstanden", en="structure not understood"),
    "too-deep": Text(de="zu tief verschachtelt", en="nested too deeply"),
    "too-much-text": Text(de="mehr Text als die Grenze", en="more text than the limit"),
    "not-text": Text(de="Text nicht auslesbar (Dateiart)", en="no text can be extracted (file type)"),
    "no-text-layer": Text(de="keine Textebene (Scan?)", en="no text layer (a scan?)"),
    "encrypted": Text(de="verschlüsselt", en="encrypted"),
    "damaged": Text(de="beschädigt", en="damaged"),
    "too-large": Text(de="größer als die Grenze", en="larger than the limit"),
    "timed-out": Text(de="Zeitgrenze überschritten", en="time limit exceeded"),
    "worker-failed": Text(de="Leseprozess abgestürzt", en="the reading process crashed"),
    "not-extracted": Text(de="Anhänge werden nicht gelesen", en="attachments are not read"),
}


@attrs.frozen(kw_only=True)
class PartText:
    """The text of one part that a recipient can read."""

    path: str
    content_type: str
    text: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class Unreadable:
    """A part whose content could not be read completely, and why (a code of :data:`UNREADABLE`)."""

    path: str
    content_type: str
    problem: str

    @property
    def reason(self) -> Text:
        why = UNREADABLE.get(self.problem, Text(de=self.problem, en=self.problem))
        return Text(de=f"Teil {self.path} {self.content_type} ({why.de})",
                    en=f"part {self.path} {self.content_type} ({why.en})")


@attrs.frozen(kw_only=True)
class Attachment:
    """A part whose text only an extractor can read (a PDF, an office document, an archive).

    Its content is decoded only when it is read (:meth:`decoded`): most copies never need it."""

    path: str
    content_type: str
    filename: str | None
    part: EmailMessage = attrs.field(repr=False, eq=False)

    @property
    def size(self) -> int:
        """About the decoded size, without decoding."""
        payload = self.part.get_payload()
        size = len(payload) if isinstance(payload, str | bytes) else 0
        encoding = str(self.part.get("content-transfer-encoding", "")).strip().lower()
        return size * 3 // 4 if encoding == "base64" else size

    def decoded(self) -> bytes | None:
        """The content, or None when its transfer encoding cannot be decoded."""
        payload = self.part.get_payload()
        encoding = str(self.part.get("content-transfer-encoding", "")).strip().lower()
        if encoding == "base64" and isinstance(payload, str) and payload.isascii():
            # binascii reads the text in place and skips line ends; the email package's own
            # decoding makes two more copies of the text and a list of its lines first.
            with contextlib.suppress(binascii.Error):  # sloppy padding: the lenient way below
                return binascii.a2b_base64(payload)
        data = self.part.get_payload(decode=True)
        if any(isinstance(defect, _UNDECODABLE) for defect in self.part.defects):
            return None
        return data if isinstance(data, bytes) else b""


@attrs.frozen(kw_only=True)
class Reading:
    """What :func:`read_message` found in a message: readable text by part, attachments left for
    the extractor, and the parts that could not be read."""

    texts: tuple[PartText, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(part.text for part in self.texts)


# Parts that carry no content for a reader: signatures and keys of signed mail.
_NOT_CONTENT = frozenset({
    "application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature",
    "application/pgp-keys",
})
# Text a recipient's program shows without being told it is text.
_TEXT_APPLICATION = frozenset({
    "application/json", "application/xml", "application/csv", "application/x-csv",
    "application/javascript", "application/x-sh", "application/sql", "application/ics",
})
_REPORT_TYPES = frozenset({"message/delivery-status", "message/disposition-notification",
                           "message/global-delivery-status",
                           "message/global-disposition-notification"})
_KNOWN_ENCODINGS = frozenset({
    "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "uue",
    "x-uue",
})
_UNDECODABLE = (email.errors.InvalidBase64CharactersDefect, email.errors.InvalidBase64LengthDefect)
_TRUNCATED = (email.errors.CloseBoundaryNotFoundDefect, email.errors.StartBoundaryNotFoundDefect,
              email.errors.NoBoundaryInMultipartDefect)
#: Header fields whose text the recipient's program shows (display names, subject, comments).
_VISIBLE_FIELDS = ("from", "sender", "reply-to", "to", "cc", "subject", "comments", "keywords",
                   "organization")
MAX_DEPTH = 30
#: Where an OpenPGP message (RFC 4880 6.2, inline or PGP/MIME) begins.
PGP_ARMOR = "-----BEGIN PGP MESSAGE-----"
_ENRICHED_TAG = re.compile(r"<(?!<)[^<>]*>")


def _header_text(part: EmailMessage, fields: tuple[str, ...]) -> str:
    lines = []
    for name in fields:
        for value in part.get_all(name, ()):
            try:
                lines.append(str(value))
            except Exception:  # a field the parser cannot make a string of: read it raw
                lines.append(repr(value))
    return "\n".join(lines)


def _source_text(part: EmailMessage, skip: frozenset[str] = frozenset()) -> str:
    """The text of every header field of ``part`` as a recipient sees it in the mail program's
    header or source view: each value decoded (encoded words, RFC 2231 parameters) and, where
    that differs, as written (and percent-decoded). A field whose name is damaged (``Su2ject``) or
    a parameter the parser does not take for a file name is still text the recipient can read."""
    lines = []
    for name, raw in part.raw_items():
        if name.lower() in skip:
            continue
        lines.append(f"{name}: {raw}")
        decoded = raw
        with contextlib.suppress(Exception):  # a field the parser cannot decode: read it raw
            decoded = str(part.policy.header_fetch_parse(name, raw))
        if decoded != raw:
            lines.append(f"{name}: {decoded}")
        if "%" in raw:  # RFC 2231 percent-encoding in a parameter the parser did not take
            lines.append(f"{name}: {urllib.parse.unquote(raw, errors='replace')}")
    return "\n".join(lines)


def _decode_attached_message(inner: EmailMessage, encoding: str) -> EmailMessage | None:
    encoded = inner.as_string() if inner.keys() else str(inner.get_payload())
    try:
        data = (binascii.a2b_base64(encoded.encode("ascii", "replace")) if encoding == "base64"
                else quopri.decodestring(encoded.encode("ascii", "replace")))
    except (binascii.Error, ValueError):
        return None
    return parse_email(data)


class _Reader:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.texts: list[PartText] = []
        self.attachments: list[Attachment] = []
        self.unreadable: list[Unreadable] = []

    def problem(self, path: str, content_type: str, code: str) -> None:
        self.unreadable.append(Unreadable(path=path, content_type=content_type, problem=code))

    def add_text(self, path: str, content_type: str, text: str) -> None:
        if not text:
            return
        room = self.limit - self.size
        if len(text) > room:
            self.problem(path, content_type, "too-much-text")
            text = text[:max(room, 0)]
        self.size += len(text)
        self.texts.append(PartText(path=path, content_type=content_type, text=text))

    def message(self, message: EmailMessage, prefix: str, depth: int) -> None:
        """A message's body: its parts are ``prefix.1``, ``prefix.2`` ... (IMAP's numbering)."""
        if message.is_multipart() and message.get_content_maintype() == "multipart":
            self.children(message, prefix, depth)
        else:
            self.entity(message, f"{prefix}.1" if prefix else "1", depth)

    def children(self, part: EmailMessage, path: str, depth: int) -> None:
        for defect in part.defects:
            if isinstance(defect, _TRUNCATED):
                self.problem(path or "0", part.get_content_type(), "truncated")
                break
        payload = part.get_payload()
        assert isinstance(payload, list)
        for index, child in enumerate(payload, start=1):
            if isinstance(child, EmailMessage):
                self.entity(child, f"{path}.{index}" if path else str(index), depth + 1)

    def entity(self, part: EmailMessage, path: str, depth: int) -> None:
        content_type = part.get_content_type()
        if depth > MAX_DEPTH:
            self.problem(path, content_type, "too-deep")
            return
        if filename := part.get_filename():
            self.add_text(path, content_type, filename)
        # Every header field of the part, not only the file name and description: a damaged
        # parameter still shows in the source view.
        self.add_text(path, content_type, _source_text(part))
        if part.is_multipart():
            payload = part.get_payload()
            if content_type in ("message/rfc822", "message/global") and isinstance(payload, list):
                inner = payload[0]
                assert isinstance(inner, EmailMessage)
                encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
                if encoding in ("base64", "quoted-printable"):
                    # RFC 2046 5.2.1 forbids it, mail programs decode it all the same; the
                    # parser took the encoded text for the attached message.
                    decoded = _decode_attached_message(inner, encoding)
                    if decoded is None:
                        self.problem(path, content_type, "undecodable")
                        self.add_text(path, content_type, self.raw_text(inner))
                        return
                    inner = decoded
                self.add_text(path, content_type, _header_text(inner, _VISIBLE_FIELDS) + "\n"
                              + _source_text(inner))
                self.message(inner, path, depth + 1)
            elif part.get_content_maintype() == "multipart":
                self.children(part, path, depth)
            elif content_type in _REPORT_TYPES:  # blocks of header fields
                for block in payload if isinstance(payload, list) else ():
                    if isinstance(block, EmailMessage):
                        self.add_text(path, content_type,
                                      "\n".join(f"{k}: {v}" for k, v in block.items()))
            else:  # message/partial, message/external-body: only a part of the content is here
                self.problem(path, content_type, "not-understood")
                for block in payload if isinstance(payload, list) else ():
                    if isinstance(block, EmailMessage):
                        self.add_text(path, content_type, _header_text(block, tuple(
                            name.lower() for name in dict.fromkeys(block))) + "\n" + self.raw_text(block))
            return
        if content_type in _NOT_CONTENT:
            return
        maintype = part.get_content_maintype()
        if maintype == "multipart" or (maintype == "message" and content_type not in (
                "message/rfc822", "message/global")):
            # A multipart without its boundary, a message/partial or external-body: read what is
            # there as text, but it does not count as read.
            self.problem(path, content_type, "not-understood")
            self.add_text(path, content_type, self.raw_text(part))
            return
        encoding = str(part.get("content-transfer-encoding", "7bit")).strip().lower()
        if encoding not in _KNOWN_ENCODINGS:
            self.problem(path, content_type, "unknown-transfer-encoding")
            self.add_text(path, content_type, self.raw_text(part))
            return
        if not (maintype == "text" or content_type in _TEXT_APPLICATION
                or content_type.endswith(("+xml", "+json"))):
            self.attachments.append(Attachment(path=path, content_type=content_type,
                                               filename=part.get_filename(), part=part))
            return
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            data = b""
        if any(isinstance(defect, _UNDECODABLE) for defect in part.defects):
            self.problem(path, content_type, "undecodable")
            self.add_text(path, content_type, self.raw_text(part))
            return
        self.text_part(part, path, content_type, data)
        if encoding == "quoted-printable":
            encoded = payload_bytes(part)
            if BARE_CR.search(encoded):
                # Mail programs take a bare CR for a line end, so ``=`` before it is a soft
                # line break; the email package drops the rest of such a line instead.
                self.text_part(part, path, content_type,
                               quopri.decodestring(BARE_CR.sub(b"\n", encoded)))
        for reading in encoded_readings(data):
            self.text_part(part, path, content_type, reading)

    def text_part(self, part: EmailMessage, path: str, content_type: str, data: bytes) -> None:
        # RFC 2046 4.1.4: an unknown text subtype is read as text/plain; so is a part without a
        # valid Content-Type (RFC 2045 5.2), which is how the parser hands it to us.
        charset = part.get_content_charset() or "us-ascii"
        try:
            codecs.lookup(charset)
        except LookupError:
            self.problem(path, content_type, "unknown-charset")
            charset = "latin-1"  # still search what is ASCII in it
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            charset = "utf-16"  # a byte-order mark says more than a missing or wrong label
        for text in plausible_texts(data, charset):
            if "\x00" in text:  # UTF-16 read as one byte per character still shows its digits
                text += "\n" + text.replace("\x00", "")
            if PGP_ARMOR in text:  # an encrypted message inside: its content cannot be checked
                self.problem(path, content_type, "encrypted")
            if content_type == "text/html":
                text = html_to_text(text, with_source=True)
            elif content_type in ("text/enriched", "text/richtext"):
                text = _ENRICHED_TAG.sub("", text).replace("<<", "<")
            self.add_text(path, content_type, text)

    @staticmethod
    def raw_text(part: EmailMessage) -> str:
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload
        if isinstance(payload, bytes):
            return payload.decode("latin-1")
        return ""


def read_message(message: EmailMessage, limit: int = 10 * 1024 * 1024) -> Reading:
    """Every part of ``message`` that a recipient could read: text of every ``text/*`` part in
    every alternative, attached or inline (HTML and enriched text converted), file names and
    descriptions, the visible header fields of attached messages and their parts; attachments
    whose text needs an extractor are listed; what cannot be read is listed with its reason.
    At most ``limit`` characters of text are kept (more is a part that was not read).

    Part paths are IMAP's section numbers: ``1`` for a single-part message, ``1.2`` for the second
    part of the first part, the parts of an attached message below its own number."""
    reader = _Reader(limit)
    try:
        reader.message(message, "", 0)
    except RecursionError:
        reader.problem("1", message.get_content_type(), "too-deep")
    return Reading(texts=tuple(reader.texts), attachments=tuple(reader.attachments),
                   unreadable=tuple(reader.unreadable))


# Characters that change nothing a reader sees: zero-width spaces and joiners, the word joiner,
# the byte-order mark, the soft hyphen, bidirectional marks.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def searchable(text: str) -> str:
    """``text`` as a reader sees it, for patterns: compatibility characters folded (NFKC: full-width
    ``１２３`` reads ``123``) and invisible characters removed (``123\u200bA456789`` reads
    ``123A456789``)."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def visible_header_text(message: EmailMessage) -> str:
    """The text of the message's header fields besides the subject, as a recipient's program
    shows them (display names, comments, keywords, organisation) and as its header or source
    view shows them (every field, decoded and as written: a field whose name is damaged)."""
    return (_header_text(message, tuple(f for f in _VISIBLE_FIELDS if f != "subject")) + "\n"
            + _source_text(message, skip=frozenset({"subject"})))


def body_text(message: EmailMessage, limit: int = 10 * 1024 * 1024) -> str:
    """All text a recipient could read in the message's parts (see :func:`read_message`; the
    text of PDFs and office documents is not included: :mod:`siegel.extract` reads it)."""
    return read_message(message, limit).text


def attachment_names(message: EmailMessage) -> list[str]:
    return [
        name
        for part in message.walk()
        if not part.is_multipart() and (name := part.get_filename())
    ]


def _parts_with_paths(message: EmailMessage) -> Iterator[tuple[EmailMessage, str]]:
    """Every part of ``message`` (itself first) with its name for reasons: ``message``, ``part
    1``, ``part 1.2``. Walked with a stack, so a deeply nested message cannot exhaust the
    interpreter's recursion limit."""
    stack = [(message, "message")]
    while stack:
        part, path = stack.pop()
        yield part, path
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            children = [(child, f"{path}.{index}" if path != "message" else f"part {index}")
                        for index, child in enumerate(payload, start=1)
                        if isinstance(child, EmailMessage)]
            stack.extend(reversed(children))


def oversized_header_blocks(message: EmailMessage, limit: int) -> list[str]:
    """The header blocks (of the message and of each MIME part) larger than ``limit`` bytes,
    measured on the raw fields, so that no field needs to be parsed to find out."""
    return [path for part, path in _parts_with_paths(message)
            if sum(len(name) + len(value) + 4 for name, value in part.raw_items()) > limit]


def subject_of(message: EmailMessage) -> str:
    value = message.get("subject")
    return str(value) if value is not None else ""


# An RFC 2047 encoded word, also without its closing ``?=`` (as a truncated or damaged field
# has it), and the white space between two of them, which readers drop.
def subject_readings(message: EmailMessage) -> str:
    """The subject as any reader could show it, for content checks: decoded by the email
    package, as written (the source view), and with every encoded word decoded leniently (one
    without its closing ``?=``, bad padding or escapes) in its declared charset and in the
    charsets readers fall back to."""
    readings = [subject_of(message)]
    for name, raw in message.raw_items():
        if name.lower() != "subject":
            continue
        unfolded = unfold_encoded_words(raw)
        readings.append(unfolded)
        readings += lenient_encoded_words(unfolded)
    return "\n".join(dict.fromkeys(readings))



# Defects after which the parser may have mis-read where parts begin and end, so classifiers may
# not have seen all content. Header defects and sloppy base64 padding are common and harmless.
_STRUCTURAL_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.InvalidMultipartContentTransferEncodingDefect,
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)


def structural_defects(message: EmailMessage) -> list[str]:
    """Structural MIME defects with the part where they occur (``part 1.2``), for reasons."""
    return [f"{path}: {type(defect).__name__}" for part, path in _parts_with_paths(message)
            for defect in part.defects if isinstance(defect, _STRUCTURAL_DEFECTS)]
