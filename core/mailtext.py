"""Texts and mails siegel writes itself (notices, invitations, carriers): German first, then English.

A text template is a file ``LANG/NAME.txt`` in a package (or a tenant's own folder, which wins):
the first line is the subject, the rest the body, with ``$name`` placeholders
(:class:`string.Template`). :func:`compose` puts the languages one after the other into one
:class:`Mail`, which is written straight to RFC 5322 bytes: the :mod:`email` package's generator
and header folding cost more than rendering a PDF for every notice and carrier mail.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import io
import random
import re
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import attrs

SEPARATOR = "\n\n" + "-" * 72 + "\n\n"
CRLF = b"\r\n"
_LINE_BREAKS = re.compile(r"[\r\n]+\s*")
_TOKEN = re.compile(r"[A-Za-z0-9!#$&^_.+-]+")
_PARAMETER_SAFE = re.compile(r"[ -~]*")
# Raw bytes per base64 line: 57 bytes make the 76 characters RFC 2045 allows.
_BASE64_LINE = 57
_BASE64_CHUNK = _BASE64_LINE * 1024
_MAX_LINE = 998  # RFC 5322 2.1.1
# "=?utf-8?b?" + base64 of 45 bytes (60 characters) + "?=": 72 of the 75 an encoded word may have.
_BYTES_PER_WORD = 45


@attrs.frozen
class TextTemplate:
    subject: str
    body: string.Template


@functools.lru_cache(maxsize=256)
def _packaged(package: str, language: str, name: str) -> TextTemplate:
    text = resources.files(package).joinpath("templates", language, f"{name}.txt").read_text(
        encoding="utf-8")
    return _parse(text)


@functools.lru_cache(maxsize=256)
def _own(path: Path, modified_ns: int) -> TextTemplate:
    return _parse(path.read_text(encoding="utf-8"))


def _parse(text: str) -> TextTemplate:
    subject, _, body = text.partition("\n")
    return TextTemplate(subject.strip(), string.Template(body))


def load(package: str, language: str, name: str, override: str | Path | None = None
         ) -> TextTemplate:
    """``LANG/NAME.txt`` from ``override`` if it has it, else from ``package``'s ``templates``.

    Both are read once; a tenant's own file is read again when it changes."""
    if override:
        own = Path(override, language, f"{name}.txt")
        try:
            return _own(own, own.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
    return _packaged(package, language, name)


@attrs.frozen
class MailAttachment:
    content: bytes = attrs.field(repr=False)
    content_type: str
    filename: str


def _header_line(name: str, value: str) -> bytes:
    """One header field, folded; non-ASCII text as RFC 2047 words. Line breaks in ``value``
    (from a decoded subject, say) become spaces, so no value can add a header of its own."""
    value = _LINE_BREAKS.sub(" ", value).strip()
    # Text that looks like an encoded word would be shown decoded; it is encoded itself instead.
    if value.isascii() and "=?" not in value:
        folded = _fold_ascii(f"{name}: {value}")
        if all(len(line) <= _MAX_LINE for line in folded.split("\r\n")):
            return folded.encode("ascii") + CRLF
    return f"{name}: {_encoded_words(value)}".encode("ascii") + CRLF


def _encoded_words(text: str) -> str:
    """RFC 2047 "B" words of at most 75 characters, one per line after the first; never splits a
    character (the :mod:`email.header` encoder does the same, several times slower)."""
    words: list[str] = []
    chunk = bytearray()
    for character in text:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _BYTES_PER_WORD:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk.clear()
        chunk += encoded
    words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return "\r\n ".join(words)


def _fold_ascii(line: str, limit: int = 78) -> str:
    if len(line) <= limit:
        return line
    folded: list[str] = []
    current = ""
    for word in re.split(r"(?<= )", line):
        if current and len(current) + len(word) > limit:
            folded.append(current.rstrip(" "))
            current = " " + word
        else:
            current += word
    folded.append(current)
    return "\r\n".join(folded)


def _address_line(name: str, value: str) -> bytes:
    """An address field: display names RFC 2047-encoded; an internationalised address itself stays
    UTF-8 (RFC 6532), as it has no other form."""
    value = _LINE_BREAKS.sub(" ", value).strip()
    if value.isascii():
        return _fold_ascii(f"{name}: {value}").encode("ascii") + CRLF
    display, address = email.utils.parseaddr(value)
    if not address:
        return _header_line(name, value)
    if not display:
        return f"{name}: {address}".encode() + CRLF
    encoded_display = display if display.isascii() else _encoded_words(display)
    if address.isascii():
        return f"{name}: {email.utils.formataddr((encoded_display, address))}".encode() + CRLF
    return f"{name}: {encoded_display} <{address}>".encode() + CRLF


_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "reply-to", "sender"})


def _parameter(name: str, value: str) -> str:
    """A MIME parameter on lines of its own; RFC 2231 (``name*=utf-8''...``, split into numbered
    sections where long) where the value is not short plain ASCII."""
    value = _LINE_BREAKS.sub(" ", value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if _PARAMETER_SAFE.fullmatch(value) and len(name) + len(escaped) < 70:
        return f'\r\n {name}="{escaped}"'
    encoded = quote(value, safe="")
    if len(name) + len(encoded) < 60:
        return f"\r\n {name}*=utf-8''{encoded}"
    sections = re.findall(r"(?:%[0-9A-F]{2}|[^%]){1,20}", encoded)
    return ";".join(
        f"\r\n {name}*{index}*=" + ("utf-8''" if index == 0 else "") + section
        for index, section in enumerate(sections))


def _content_type(value: str) -> str:
    maintype, _, subtype = value.partition("/")
    if _TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype):
        return f"{maintype}/{subtype}".lower()
    return "application/octet-stream"


def _write_base64(out: io.BytesIO, content: bytes) -> None:
    view = memoryview(content)
    for start in range(0, len(view), _BASE64_CHUNK):
        out.write(base64.encodebytes(view[start:start + _BASE64_CHUNK]).replace(b"\n", CRLF))


def _quoted_printable(text: str) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(lines, istext=True).replace(b"\n", CRLF)


@attrs.define
class Mail:
    """A plain-text mail with optional attachments, written to bytes by :meth:`to_bytes`.

    Header names are matched case-insensitively; values are text (encoded when written)."""

    headers: list[tuple[str, str]] = attrs.Factory(list)
    text: str = ""
    attachments: list[MailAttachment] = attrs.Factory(list)

    def get(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    def add(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def remove(self, name: str) -> None:
        wanted = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != wanted]

    def set(self, name: str, value: str) -> None:
        """Replace the first field ``name`` in place (dropping others), or add it."""
        wanted = name.lower()
        replaced: list[tuple[str, str]] = []
        placed = False
        for field_name, field_value in self.headers:
            if field_name.lower() != wanted:
                replaced.append((field_name, field_value))
            elif not placed:
                replaced.append((name, value))
                placed = True
        if not placed:
            replaced.append((name, value))
        self.headers = replaced

    def attach(self, content: bytes, content_type: str, filename: str) -> None:
        self.attachments.append(MailAttachment(content, _content_type(content_type), filename))

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        for name, value in self.headers:
            if name.lower() in _ADDRESS_FIELDS:
                out.write(_address_line(name, value))
            else:
                out.write(_header_line(name, value))
        out.write(b"MIME-Version: 1.0\r\n")
        text_headers = (b"Content-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Transfer-Encoding: quoted-printable\r\n")
        if not self.attachments:
            out.write(text_headers + CRLF + _quoted_printable(self.text))
            return out.getvalue()
        # No part can contain "=_": quoted-printable writes "=" as "=3D" and base64 has no "_".
        # So the boundary need not be unpredictable (and costs no system call).
        boundary = f"=_siegel_{random.getrandbits(96):024x}".encode("ascii")
        out.write(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n')
        out.write(b"--" + boundary + CRLF + text_headers + CRLF + _quoted_printable(self.text))
        for attachment in self.attachments:
            disposition = _parameter("filename", attachment.filename)
            out.write(CRLF + b"--" + boundary + CRLF)
            out.write(f"Content-Type: {attachment.content_type};"
                      f"{_parameter('name', attachment.filename)}\r\n"
                      f"Content-Disposition: attachment;{disposition}\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii"))
            _write_base64(out, attachment.content)
        out.write(CRLF + b"--" + boundary + b"--" + CRLF)
        return out.getvalue()


def compose(
    *,
    package: str,
    name: str,
    languages: Iterable[str],
    values: Mapping[str, Mapping[str, str]] | Mapping[str, str],
    sender: str,
    to: str,
    override: str | Path | None = None,
    subject_suffix: str = "",
    message_id_domain: str | None = None,
) -> Mail:
    """A plain-text mail with the template in every language, German first if asked so.

    ``values`` is either one mapping for all languages or one per language code.
    """
    subjects: list[str] = []
    bodies: list[str] = []
    for language in languages:
        template = load(package, language, name, override)
        per_language = values.get(language) if isinstance(values.get(language), Mapping) else values
        assert isinstance(per_language, Mapping)
        subjects.append(string.Template(template.subject).safe_substitute(per_language))
        bodies.append(template.body.safe_substitute(per_language).strip() + "\n")
    domain = message_id_domain or sender.rpartition("@")[2].rstrip(">") or None
    return Mail(headers=[
        ("From", sender),
        ("To", to),
        ("Subject", " / ".join(subjects) + subject_suffix),
        ("Date", email.utils.formatdate(localtime=False)),
        ("Message-ID", email.utils.make_msgid(domain=domain)),
        ("Auto-Submitted", "auto-generated"),
    ], text=SEPARATOR.join(bodies))
