"""Render an e-mail as a readable PDF with its attachments embedded.

The PDF is meant for a citizen who receives a message from an authority: letterhead, the
header block (From/To/Cc/Date/Subject), the text of the message and a list of the
attachments, which travel inside the PDF as embedded files (EmbeddedFiles name tree and
``/AF``) with their original names, MIME types and exact bytes.

Nothing in the message is ever interpreted as markup or code: HTML bodies are reduced to
text with the stdlib parser (script and style content dropped, no resource is fetched),
and all text is escaped before it reaches reportlab's Paragraph mini-language, whose
``<img src=...>`` would otherwise read files or URLs.

The work is CPU-bound: call :func:`render_message` from a worker thread or process, not on
the event loop. The reportlab layout step is serialised by a lock (reportlab keeps
module-level state); it takes milliseconds per page.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html.parser
import io
import logging
import mimetypes
import re
import secrets
import threading
import time
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from importlib import resources
from typing import Any, Final, Literal
from xml.sax.saxutils import escape

import attrs
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pyhanko.pdf_utils import embed, generic
from pyhanko.pdf_utils.crypt.api import SecurityHandler
from pyhanko.pdf_utils.crypt.filter_mixins import AESCryptFilterMixin
from pyhanko.pdf_utils.misc import PdfWriteError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter, copy_into_new_writer
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from siegel.localtime import DEFAULT_TIME_ZONE, UnknownTimeZone, format_moment, time_zone

__all__ = ["DEFAULT_MAX_BODY_CHARS", "Language", "Letterhead", "html_to_text", "render_message"]

log = logging.getLogger(__name__)

Language = Literal["de", "en"]

#: Longest body text that is typeset (about 150 pages). A longer text is cut in the
#: rendered pages and embedded in full as a text attachment, so nothing is lost but a
#: huge message cannot keep a worker busy for minutes.
DEFAULT_MAX_BODY_CHARS: Final = 400_000

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_FONT_REGULAR: Final = "SiegelDejaVuSans"
_FONT_BOLD: Final = "SiegelDejaVuSans-Bold"
_MAX_FILENAME_CHARS: Final = 200
# A4 less 20 mm margins and the 6 pt padding of SimpleDocTemplate's frame on each side.
_CONTENT_WIDTH: Final = A4[0] - 40 * mm - 12
_REPORTLAB_LOCK: Final = threading.Lock()
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")

_LABELS: Final[dict[str, dict[str, str]]] = {
    "de": {
        "from": "Von",
        "to": "An",
        "cc": "Cc",
        "date": "Datum",
        "subject": "Betreff",
        "attachments": "Anlagen",
        "name": "Name",
        "type": "Typ",
        "size": "Größe",
        "embedded_note": (
            "Die Anlagen sind unverändert in diese PDF-Datei eingebettet "
            "(im PDF-Programm unter „Anlagen“ bzw. „Büroklammer“)."
        ),
        "no_text": "(Diese Nachricht enthält keinen Text.)",
        "no_subject": "(ohne Betreff)",
        "page": "Seite {page} von {pages}",
        "truncated": (
            "[Der Text ist zu lang für die Darstellung und wurde hier gekürzt. "
            "Der vollständige Text liegt als Anlage „{name}“ bei.]"
        ),
        "unrenderable": (
            "[Einige Zeichen dieser Nachricht (z. B. Schriften, die von rechts nach links "
            "laufen, oder chinesische Zeichen) können hier nicht richtig dargestellt werden. "
            "Der Originaltext liegt als Anlage „{name}“ bei.]"
        ),
        "full_text_name": "nachricht-volltext.txt",
        "fallback_name": "anlage-{n}",
        "bytes": "Bytes",
        "document_subject": "E-Mail-Nachricht",
    },
    "en": {
        "from": "From",
        "to": "To",
        "cc": "Cc",
        "date": "Date",
        "subject": "Subject",
        "attachments": "Attachments",
        "name": "Name",
        "type": "Type",
        "size": "Size",
        "embedded_note": (
            "The attachments are embedded unchanged in this PDF file "
            "(see “Attachments” or the paper clip in your PDF viewer)."
        ),
        "no_text": "(This message contains no text.)",
        "no_subject": "(no subject)",
        "page": "Page {page} of {pages}",
        "truncated": (
            "[The text is too long to be shown in full and has been cut here. "
            "The complete text is attached as “{name}”.]"
        ),
        "unrenderable": (
            "[Some characters of this message (for example right-to-left scripts or Chinese "
            "characters) cannot be shown correctly here. The original text is attached as "
            "“{name}”.]"
        ),
        "full_text_name": "message-full-text.txt",
        "fallback_name": "attachment-{n}",
        "bytes": "bytes",
        "document_subject": "E-mail message",
    },
}


def _optional_png(value: bytes | None) -> bytes | None:
    if value is not None and not bytes(value).startswith(_PNG_MAGIC):
        raise ValueError("Letterhead.logo_png must be PNG data (it lacks the PNG signature)")
    return None if value is None else bytes(value)



def _lines(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _known_zone(_instance: object, _attribute: object, value: str) -> None:
    try:
        time_zone(value)
    except UnknownTimeZone as exc:
        raise ValueError(f"Letterhead.time_zone: {exc}") from None

@attrs.frozen(kw_only=True)
class Letterhead:
    """Who sends: shown at the top of the first page.

    ``logo_png`` is optional PNG data, scaled to fit 50 x 20 mm.
    """

    tenant_name: str = attrs.field(validator=attrs.validators.min_len(1))
    address_lines: tuple[str, ...] = attrs.field(
        default=(),
        converter=_lines,
        validator=attrs.validators.deep_iterable(attrs.validators.instance_of(str)),
    )
    logo_png: bytes | None = attrs.field(default=None, converter=_optional_png, repr=False)
    #: The tenant's time zone (IANA name): the message's date is shown in it, with its name.
    time_zone: str = attrs.field(default=DEFAULT_TIME_ZONE, validator=_known_zone)


@attrs.frozen
class _Attachment:
    filename: str
    mime_type: str
    data: bytes = attrs.field(repr=False)


# --------------------------------------------------------------------------- text


# C0/C1 controls except tab and newline, lone surrogates (from surrogateescape decoding),
# and bidi embedding/override/isolate controls, which can make a name such as
# "rechnung<RLO>fdp.exe" display as "rechnungexe.pdf".
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _clean(text: str) -> str:
    """Text as it is shown: composed accents (NFC), no control or bidi-override characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _UNSAFE_CHARS.sub(lambda m: "\ufffd" if "\ud800" <= m[0] <= "\udfff" else "", text)
    return unicodedata.normalize("NFC", text)


def _markup(text: str) -> str:
    """Plain text to Paragraph markup: escaped, with runs of spaces kept."""
    escaped = escape(text)
    # Paragraph collapses whitespace; keep indentation and columns of plain-text mails.
    escaped = re.sub(r"^ +", lambda m: "&nbsp;" * len(m[0]), escaped)
    return re.sub(r"  +", lambda m: " " + "&nbsp;" * (len(m[0]) - 1), escaped)


class _HtmlToText(html.parser.HTMLParser):
    """Reduce HTML to readable text. Only text is kept: nothing is loaded or run."""

    _SKIP: Final = frozenset({"script", "style", "template", "title", "head"})
    _BLOCK: Final = frozenset(
        {
            "address",
            "article",
            "aside",
            "blockquote",
            "dd",
            "div",
            "dl",
            "dt",
            "fieldset",
            "figcaption",
            "figure",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "main",
            "nav",
            "ol",
            "p",
            "pre",
            "section",
            "table",
            "tbody",
            "thead",
            "tfoot",
            "tr",
            "ul",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._links: list[str | None] = []
        self._link_text_start: list[int] = []

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            # An unclosed <head> must not swallow the body.
            self._skip_depth = 0
            return
        if tag in self._SKIP:
            self._skip_depth += 1
            return
        if self._skip_depth:
            return
        attributes = dict(attrs_)
        if tag == "br":
            self._out.append("\n")
        elif tag == "li":
            self._out.append("\n• ")
        elif tag in ("td", "th"):
            self._out.append("\t")
        elif tag == "hr":
            self._out.append("\n" + "—" * 20 + "\n")
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self._out.append(f"[{alt}]")
        elif tag == "a":
            self._links.append(attributes.get("href"))
            self._link_text_start.append(len(self._out))
        elif tag in self._BLOCK:
            self._out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "table") else "\n")
        if tag == "pre":
            self._pre_depth += 1

    def handle_startendtag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs_)
        if tag not in ("br", "hr", "img", "a"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if self._skip_depth:
            return
        if tag == "a" and self._links:
            href = (self._links.pop() or "").strip()
            start = self._link_text_start.pop()
            text = "".join(self._out[start:]).strip()
            # Links become visible text, never clickable: the reader sees where it points.
            if re.match(r"(?i)(https?|mailto):", href) and href.removeprefix("mailto:") != text:
                self._out.append(f" <{href}>")
        elif tag in self._BLOCK:
            self._out.append("\n\n" if tag in ("p", "h1", "h2", "h3", "table") else "\n")
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            # Keep line structure: protect newlines from the whitespace collapse below.
            self._out.append(data.replace("\n", "\x00"))
        else:
            self._out.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        self.close()
        raw = "".join(self._out)
        lines = []
        for line in raw.split("\n"):
            line = re.sub(r"[ \t]*\t[ \t]*", "\t", line).strip(" ")
            line = line.strip("\t").replace("\t", "  |  ")
            lines.append(line.replace("\x00", "\n"))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def html_to_text(markup: str) -> str:
    """Readable text from an HTML body; script/style/head content is dropped."""
    parser = _HtmlToText()
    parser.feed(markup)
    return parser.text()


# ------------------------------------------------------------------------ message


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    # Undeclared charset: UTF-8 reads ASCII unchanged and is what unlabelled 8-bit mail
    # mostly is. An unknown or broken charset shows what can be shown rather than nothing.
    charset = part.get_content_charset("utf-8")
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _raw_header(message: EmailMessage, name: str) -> str:
    values = []
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            try:
                values.append(str(make_header(decode_header(str(value)))))
            except (LookupError, UnicodeError, ValueError, binascii.Error):
                values.append(str(value))
    return ", ".join(" ".join(v.split()) for v in values)


def _header(message: EmailMessage, name: str) -> str:
    """The header as the reader should see it; where parsing lost something, the raw text."""
    try:
        values = message.get_all(name) or []
        if not any(getattr(value, "defects", None) for value in values):
            return ", ".join(str(value) for value in values)
    except Exception:  # a malformed header must not stop the delivery
        log.debug("unparsable %s header, showing it raw", name, exc_info=True)
    return _raw_header(message, name)


def _date(message: EmailMessage, language: str, zone: str) -> str:
    try:
        header = message["Date"]
        moment = getattr(header, "datetime", None)
    except Exception:  # a malformed header must not stop the delivery
        return _header(message, "Date")
    if moment is None:
        return _header(message, "Date")
    if moment.tzinfo is None:  # "-0000": the sender did not say its zone; RFC 5322 means UTC
        moment = moment.replace(tzinfo=UTC)
    try:
        return format_moment(moment, time_zone(zone), language)
    except (ValueError, OverflowError):  # a date the calendar functions cannot show
        return _header(message, "Date")


def _leaves(part: Message) -> Iterator[Message]:
    """Leaf parts in order; a forwarded message (message/rfc822) counts as one leaf, and so
    does a multipart the parser could not split (its raw text is kept, not dropped)."""
    subparts = part.get_payload()
    if part.get_content_maintype() == "multipart" and isinstance(subparts, list):
        for sub in subparts:
            if isinstance(sub, Message):
                yield from _leaves(sub)
    else:
        yield part


def _alternative_ancestor(root: Message, target: Message) -> Message | None:
    """The innermost multipart/alternative that contains ``target``, if any."""

    def search(node: Message, nearest: Message | None) -> Message | bool | None:
        if node is target:
            return nearest if nearest is not None else True
        subparts = node.get_payload()
        if node.get_content_maintype() != "multipart" or not isinstance(subparts, list):
            return None
        if node.get_content_type() == "multipart/alternative":
            nearest = node
        for sub in subparts:
            found = search(sub, nearest) if isinstance(sub, Message) else None
            if found is not None:
                return found
        return None

    found = search(root, None)
    return found if isinstance(found, Message) else None


def _is_body_rendition(part: Message) -> bool:
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_content_disposition() != "attachment"
        and part.get_filename() is None
    )


def _safe_filename(raw: str | None, fallback: str) -> str:
    name = _clean(raw or "").replace("\n", " ")
    name = re.split(r"[/\\]", name)[-1].strip().strip(".").strip()
    name = unicodedata.normalize("NFC", name)
    if not name:
        return fallback
    if len(name) > _MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 16 else ""
        keep = _MAX_FILENAME_CHARS - len(ext) - (1 if ext else 0)
        name = (stem if ext else name)[:keep] + (f".{ext}" if ext else "")
    return name


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{ext}"
    taken.add(candidate.casefold())
    return candidate


def _attachment_data(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0)
        return inner.as_bytes() if isinstance(inner, Message) else b""
    if part.get("Content-Transfer-Encoding", "").strip().lower() == "base64":
        encoded = part.get_payload()
        if isinstance(encoded, str):
            try:
                # Straight from the base64 text: the stdlib path (get_payload(decode=True))
                # makes an ASCII copy, a list of lines and a joined copy first, about six
                # times the attachment size at peak.
                return binascii.a2b_base64(encoded)
            except (binascii.Error, ValueError):
                pass  # bad padding or non-ASCII: let the stdlib repair what it can
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _extract(message: EmailMessage, labels: dict[str, str]) -> tuple[str, list[_Attachment]]:
    body = message.get_body(preferencelist=("plain", "html"))
    skip: set[int] = set()
    text = ""
    if body is not None:
        skip.add(id(body))
        alternative = _alternative_ancestor(message, body)
        if alternative is not None:
            skip.update(id(p) for p in _leaves(alternative) if _is_body_rendition(p))
        text = _part_text(body)
        if body.get_content_type() == "text/html":
            text = html_to_text(text)

    attachments: list[_Attachment] = []
    taken: set[str] = set()
    for part in _leaves(message):
        if id(part) in skip:
            continue
        mime_type = part.get_content_type()
        if not _MIME_TYPE.match(mime_type):
            mime_type = "application/octet-stream"
        extension = mimetypes.guess_extension(mime_type, strict=False) or ".bin"
        fallback = labels["fallback_name"].format(n=len(attachments) + 1) + extension
        name = _unique(_safe_filename(part.get_filename(), fallback), taken)
        attachments.append(_Attachment(name, mime_type, _attachment_data(part)))
    return text, attachments


# ------------------------------------------------------------------------ layout


@functools.cache
def _register_fonts() -> None:
    folder = resources.files(__package__).joinpath("fonts")
    for font_name, file_name in (
        (_FONT_REGULAR, "DejaVuSans.ttf"),
        (_FONT_BOLD, "DejaVuSans-Bold.ttf"),
    ):
        with resources.as_file(folder.joinpath(file_name)) as path:
            pdfmetrics.registerFont(TTFont(font_name, str(path)))
    pdfmetrics.registerFontFamily(
        _FONT_REGULAR,
        normal=_FONT_REGULAR,
        bold=_FONT_BOLD,
        italic=_FONT_REGULAR,
        boldItalic=_FONT_BOLD,
    )


def _has_unrenderable(text: str) -> bool:
    """True if ``text`` has characters without a glyph in the font, or right-to-left
    characters (reportlab lays out without the bidi algorithm, so they come out reversed)."""
    if text.isascii():
        return False
    covered = pdfmetrics.getFont(_FONT_REGULAR).face.charToGlyph
    return any(
        (ord(ch) not in covered and ch != "\n") or unicodedata.bidirectional(ch) in ("R", "AL")
        for ch in set(text)
    )


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle(
        "siegel-body", fontName=_FONT_REGULAR, fontSize=10, leading=13.5, splitLongWords=1
    )
    return {
        "body": base,
        "small": ParagraphStyle("siegel-small", parent=base, fontSize=8.5, leading=11),
        "tenant": ParagraphStyle(
            "siegel-tenant", parent=base, fontName=_FONT_BOLD, fontSize=13, leading=16
        ),
        "label": ParagraphStyle("siegel-label", parent=base, fontName=_FONT_BOLD),
        "subject": ParagraphStyle(
            "siegel-subject", parent=base, fontName=_FONT_BOLD, fontSize=12, leading=15
        ),
        "heading": ParagraphStyle(
            "siegel-heading",
            parent=base,
            fontName=_FONT_BOLD,
            fontSize=11,
            leading=14,
            spaceBefore=12,
            spaceAfter=4,
        ),
        "cell": ParagraphStyle("siegel-cell", parent=base, fontSize=9, leading=11.5),
        "right": ParagraphStyle(
            "siegel-right", parent=base, fontSize=9, leading=11.5, alignment=TA_RIGHT
        ),
    }


class _NumberedCanvas(Canvas):  # type: ignore[misc]  # reportlab ships no type hints
    """Defers the footer until the page count is known ("Seite 2 von 5").

    The usual reportlab recipe: each page's canvas state is kept at showPage() and replayed
    at save(). It relies on reportlab's private ``Canvas._startPage`` (checked with
    reportlab 5.1.0); the page tests catch a change.
    """

    def __init__(self, *args: Any, footer: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._footer = footer
        self._page_states: list[dict[str, Any]] = []

    def showPage(self) -> None:  # reportlab's name
        self._page_states.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        pages = len(self._page_states)
        for number, state in enumerate(self._page_states, start=1):
            self.__dict__.update(state)
            self.setFont(_FONT_REGULAR, 8)
            self.setFillColor(colors.grey)
            text = self._footer.format(page=number, pages=pages)
            self.drawRightString(A4[0] - 20 * mm, 12 * mm, text)
            super().showPage()
        super().save()


def _format_size(size: int, language: str, labels: dict[str, str]) -> str:
    if size < 1024:
        text = f"{size} {labels['bytes']}"
    elif size < 1024 * 1024:
        text = f"{size / 1024:.1f} KB"
    else:
        text = f"{size / (1024 * 1024):.1f} MB"
    return text.replace(".", ",") if language == "de" else text


def _letterhead_flowables(letterhead: Letterhead, styles: dict[str, ParagraphStyle]) -> Flowable:
    lines: list[Flowable] = [Paragraph(_markup(_clean(letterhead.tenant_name)), styles["tenant"])]
    lines += [
        Paragraph(_markup(_clean(line)), styles["small"]) for line in letterhead.address_lines
    ]
    logo: Flowable | str = ""
    if letterhead.logo_png is not None:
        reader = ImageReader(io.BytesIO(letterhead.logo_png))
        width, height = reader.getSize()
        scale = min(50 * mm / width, 20 * mm / height)
        logo = Image(io.BytesIO(letterhead.logo_png), width * scale, height * scale)
        logo.hAlign = "RIGHT"
    table = Table([[lines, logo]], colWidths=[_CONTENT_WIDTH - 60 * mm, 60 * mm])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("ALIGN", (1, 0), (1, 0), "RIGHT"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


def _header_table(
    message: EmailMessage, language: str, labels: dict[str, str], styles: dict[str, ParagraphStyle],
    zone: str,
) -> Flowable:
    rows = []
    for key, value in (
        ("from", _header(message, "From")),
        ("to", _header(message, "To")),
        ("cc", _header(message, "Cc")),
        ("date", _date(message, language, zone)),
    ):
        if value or key in ("from", "to"):
            rows.append(
                [
                    Paragraph(labels[key] + ":", styles["label"]),
                    Paragraph(_markup(_clean(value)), styles["body"]),
                ]
            )
    subject = _clean(_header(message, "Subject")) or labels["no_subject"]
    rows.append(
        [
            Paragraph(labels["subject"] + ":", styles["label"]),
            Paragraph(_markup(subject), styles["subject"]),
        ]
    )
    table = Table(rows, colWidths=[25 * mm, _CONTENT_WIDTH - 25 * mm])
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.grey),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 6),
            ]
        )
    )
    return table


def _body_flowables(text: str, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    # One Paragraph per source line: splitting a huge paragraph across pages is quadratic
    # in reportlab, many small ones are linear.
    flowables: list[Flowable] = []
    blank = Spacer(1, styles["body"].leading)
    for line in text.split("\n"):
        if line.strip():
            flowables.append(Paragraph(_markup(line), styles["body"]))
        else:
            flowables.append(blank)
    return flowables


def _attachment_table(
    attachments: Sequence[_Attachment],
    language: str,
    labels: dict[str, str],
    styles: dict[str, ParagraphStyle],
) -> list[Flowable]:
    rows: list[list[Flowable]] = [
        [
            Paragraph(labels["name"], styles["label"]),
            Paragraph(labels["type"], styles["label"]),
            Paragraph(labels["size"], styles["label"]),
        ]
    ]
    for attachment in attachments:
        rows.append(
            [
                Paragraph(_markup(attachment.filename), styles["cell"]),
                Paragraph(_markup(attachment.mime_type), styles["cell"]),
                Paragraph(_format_size(len(attachment.data), language, labels), styles["right"]),
            ]
        )
    table = Table(rows, colWidths=[_CONTENT_WIDTH - 75 * mm, 50 * mm, 25 * mm], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return [
        Paragraph(labels["attachments"], styles["heading"]),
        table,
        Spacer(1, 4),
        Paragraph(labels["embedded_note"], styles["small"]),
    ]


# ------------------------------------------------------------------------ embedding


def _pdfdoc_key(name: str) -> bytes:
    """The bytes a PDF text string holds for ``name``; name trees sort by these."""
    try:
        return bytes(generic.encode_pdfdocencoding(name))  # type: ignore[no-untyped-call]
    except UnicodeEncodeError:
        return b"\xfe\xff" + name.encode("utf-16-be")


def _legacy_name(name: str) -> str:
    """``/F`` must be PDFDocEncoding-safe for old readers; ``/UF`` carries the real name."""
    try:
        generic.encode_pdfdocencoding(name)  # type: ignore[no-untyped-call]
    except UnicodeEncodeError:
        # "Müller" -> "Muller", letters without an ASCII base -> "_"; the extension stays.
        return "".join(
            ch if " " <= ch <= "~" else "" if unicodedata.combining(ch) else "_"
            for ch in unicodedata.normalize("NFKD", name)
        )
    return name


def _worth_compressing(data: bytes) -> bool:
    sample = data[: 64 * 1024]
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


_WRITE_CHUNK_BYTES: Final = 1024 * 1024
_AES_BLOCK_BYTES: Final = 16


class _EmbeddedFile(embed.EmbeddedFileObject):
    """An embedded file that is encrypted piece by piece as it is written, then let go.

    pyHanko encrypts a stream in one piece: it pads the data (a copy), encrypts it (a copy) and
    puts the IV in front (a copy) before writing, and its writer lives on in reference cycles
    holding the data. This object writes the same bytes for the AES-256 crypt filter (a random
    16-byte IV, then AES-256-CBC with PKCS#7 padding, ISO 32000-2 section 7.6.3) a megabyte at a
    time, and drops the content once written. The content is held Flate-compressed when that
    makes it smaller. It can be written once.
    """

    def __init__(self, writer: PdfFileWriter, attachment: _Attachment) -> None:
        super().__init__(pdf_writer=writer, mime_type=attachment.mime_type)
        data = attachment.data
        # pyHanko is untyped: its object constructors are untyped calls.
        self["/Params"] = generic.DictionaryObject({  # type: ignore[no-untyped-call]
            generic.NameObject("/Size"): generic.NumberObject(len(data)),  # type: ignore[no-untyped-call]
            generic.NameObject("/CheckSum"): generic.ByteStringObject(
                hashlib.md5(data, usedforsecurity=False).digest()),
        })
        if _worth_compressing(data):
            data = zlib.compress(data)
            self["/Filter"] = generic.NameObject("/FlateDecode")
        self._content: bytes | None = data

    def write_to_stream(
        self,
        stream: io.BytesIO,
        handler: SecurityHandler | None = None,
        container_ref: generic.Reference | None = None,
    ) -> None:
        content, self._content = self._content, None
        if content is None:
            raise PdfWriteError("an embedded file of siegel's renderer can be written only once")
        key = None if handler is None or container_ref is None else _aes256_key(
            handler, container_ref)
        length = len(content)
        if key is not None:
            length = _AES_BLOCK_BYTES + (length // _AES_BLOCK_BYTES + 1) * _AES_BLOCK_BYTES
        self["/Length"] = generic.NumberObject(length)  # type: ignore[no-untyped-call]
        generic.DictionaryObject.write_to_stream(self, stream, handler, container_ref)
        del self["/Length"]
        stream.write(b"\nstream\n")
        if key is None:
            stream.write(content)
        else:
            iv = secrets.token_bytes(_AES_BLOCK_BYTES)
            encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            padder = padding.PKCS7(8 * _AES_BLOCK_BYTES).padder()
            stream.write(iv)
            view = memoryview(content)
            for start in range(0, len(view), _WRITE_CHUNK_BYTES):
                stream.write(encryptor.update(padder.update(view[start:start + _WRITE_CHUNK_BYTES])))
            stream.write(encryptor.update(padder.finalize()) + encryptor.finalize())
        stream.write(b"\nendstream")


def _aes256_key(handler: SecurityHandler, container_ref: generic.Reference) -> bytes:
    """The key of the AES-256 filter that encrypts embedded files; refuses any other setup
    rather than writing an embedded file unencrypted or differently from the other streams."""
    config = handler.crypt_filter_config
    crypt_filter = handler.get_stream_filter()
    own_filter = config.embedded_file_filter_name  # None: embedded files use the stream filter
    if (
        (own_filter is not None and own_filter != config.stream_filter_name)
        or not isinstance(crypt_filter, AESCryptFilterMixin)
        or crypt_filter.keylen != 32
    ):
        raise PdfWriteError("siegel's renderer embeds files only in AES-256 encrypted documents")
    key = crypt_filter.derive_object_key(container_ref.idnum, container_ref.generation)
    assert isinstance(key, bytes)
    return key


def _embed_attachments(writer: PdfFileWriter, attachments: Sequence[_Attachment]) -> None:
    taken: set[str] = set()
    specs = []
    for attachment in attachments:
        legacy = _unique(_legacy_name(attachment.filename), taken)
        specs.append((legacy, attachment))
    # The EmbeddedFiles name tree must be sorted by key; embed_file appends in call order.
    for legacy, attachment in sorted(specs, key=lambda item: _pdfdoc_key(item[0])):
        stream = _EmbeddedFile(writer, attachment)
        embed.embed_file(
            writer,
            embed.FileSpec(
                file_spec_string=legacy,
                file_name=attachment.filename,
                embedded_data=stream,
                af_relationship=generic.NameObject("/Unspecified"),
            ),
        )
    # Open the attachment panel: the citizen should see the files without searching.
    writer.root["/PageMode"] = generic.NameObject("/UseAttachments")
    writer.update_root()  # type: ignore[no-untyped-call]  # pyHanko is untyped


def _typeset(story: list[Flowable], *, title: str, author: str, language: str) -> tuple[bytes, int]:
    """Lay out ``story`` with reportlab; returns the PDF and its page count."""
    labels = _LABELS[language]
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=22 * mm,
        title=title,
        subject=labels["document_subject"],
        author=author,
        creator="siegel",
        lang="de-DE" if language == "de" else "en",
    )
    doc.build(story, canvasmaker=functools.partial(_NumberedCanvas, footer=labels["page"]))
    return out.getvalue(), int(doc.page)


def _render_writer(
    message: EmailMessage, *, letterhead: Letterhead, language: str, max_body_chars: int
) -> PdfFileWriter:
    """The rendered message as a pyHanko writer, not yet serialised.

    Internal to this package: ``pipeline.render_encrypted`` encrypts this writer directly,
    so a large attachment is not written out unencrypted and parsed back in.
    """
    if language not in _LABELS:
        raise ValueError(f"language must be one of {sorted(_LABELS)}, not {language!r}")
    labels = _LABELS[language]
    started = time.perf_counter()

    original, attachments = _extract(message, labels)
    text = _clean(original)
    # Where the pages cannot show the text faithfully (too long, or characters the font or
    # reportlab cannot lay out), the text as decoded travels along as a UTF-8 file.
    notice = ""
    if len(text) > max_body_chars:
        notice = "truncated"
    else:
        with _REPORTLAB_LOCK:
            _register_fonts()
        if _has_unrenderable(text):
            notice = "unrenderable"
    if notice:
        full_name = _unique(labels["full_text_name"], {a.filename.casefold() for a in attachments})
        data = original.encode("utf-8", "replace")
        attachments.append(_Attachment(full_name, "text/plain", data))
        shown = text[:max_body_chars] if notice == "truncated" else text
        text = shown + "\n\n" + labels[notice].format(name=full_name)
    del original

    # reportlab keeps module-level state (font registry, per-document font subsets) and
    # is not documented as thread-safe: one layout at a time per process. Layout takes
    # milliseconds; the slow part for big attachments (pyHanko) runs outside the lock.
    with _REPORTLAB_LOCK:
        _register_fonts()
        styles = _styles()
        story: list[Flowable] = [
            _letterhead_flowables(letterhead, styles),
            Spacer(1, 6 * mm),
            _header_table(message, language, labels, styles, letterhead.time_zone),
            Spacer(1, 5 * mm),
        ]
        if text.strip():
            story += _body_flowables(text, styles)
        else:
            story.append(Paragraph(labels["no_text"], styles["body"]))
        if attachments:
            story += _attachment_table(attachments, language, labels, styles)
        pdf, pages = _typeset(
            story,
            title=_clean(_header(message, "Subject")) or labels["no_subject"],
            author=_clean(letterhead.tenant_name),
            language=language,
        )
    layout_ms = (time.perf_counter() - started) * 1000

    # The attachments never pass through reportlab: pyHanko embeds them into a copy of
    # the (small) typeset document.
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(pdf)))
    if attachments:
        _embed_attachments(writer, attachments)
    log.debug(
        "typeset %d page(s) in %.1f ms (%.1f ms/page), %d attachment(s)",
        pages,
        layout_ms,
        layout_ms / max(pages, 1),
        len(attachments),
    )
    return writer


# ------------------------------------------------------------------------ public


def render_message(
    message: EmailMessage,
    *,
    letterhead: Letterhead,
    language: Language = "de",
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
) -> bytes:
    """Render ``message`` as an unencrypted PDF (bytes, in memory).

    The body is text/plain if the message has one, otherwise its HTML converted to text.
    Every other MIME leaf part (attachments, inline images, a forwarded message as .eml)
    is listed and embedded with its file name, MIME type and exact bytes. A body longer
    than ``max_body_chars`` is cut in the pages and embedded in full as a text file.

    To deliver the PDF encrypted, prefer :func:`~.pipeline.render_encrypted`, which does
    not hold an unencrypted copy of the attachments in between.

    :raises ValueError: for an unknown ``language``.
    """
    writer = _render_writer(
        message, letterhead=letterhead, language=language, max_body_chars=max_body_chars
    )
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]  # pyHanko is untyped
    return out.getvalue()
