"""Extracting what the PDF shows from the MIME message: the body text and the attachments.

Text as it is shown (:func:`clean_text`), the header values as the reader should see them, the
body (text/plain if the message has one, otherwise its HTML as the page shows it, by
:func:`siegel.mime.html_to_text`: nothing is fetched or run) and every other leaf part as an
attachment with a safe, unique file name and its exact bytes.
"""

from __future__ import annotations

import binascii
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Final

import attrs

from siegel.localtime import format_moment, time_zone
from siegel.mime import html_to_text

log = logging.getLogger(__name__)

_MAX_FILENAME_CHARS: Final = 200
_MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


@attrs.frozen
class Attachment:
    """A part as the PDF embeds it: a safe file name, unique in the message, its MIME type and
    its exact bytes."""

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


def clean_text(text: str) -> str:
    """Text as it is shown: composed accents (NFC), no control or bidi-override characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _UNSAFE_CHARS.sub(lambda m: "\ufffd" if "\ud800" <= m[0] <= "\udfff" else "", text)
    return unicodedata.normalize("NFC", text)


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


def header_value(message: EmailMessage, name: str) -> str:
    """The header as the reader should see it; where parsing lost something, the raw text."""
    try:
        values = message.get_all(name) or []
        if not any(getattr(value, "defects", None) for value in values):
            return ", ".join(str(value) for value in values)
    except Exception:  # a malformed header must not stop the delivery
        log.debug("unparsable %s header, showing it raw", name, exc_info=True)
    return _raw_header(message, name)


def date_text(message: EmailMessage, language: str, zone: str) -> str:
    try:
        header = message["Date"]
        moment = getattr(header, "datetime", None)
    except Exception:  # a malformed header must not stop the delivery
        return header_value(message, "Date")
    if moment is None:
        return header_value(message, "Date")
    if moment.tzinfo is None:  # "-0000": the sender did not say its zone; RFC 5322 means UTC
        moment = moment.replace(tzinfo=UTC)
    try:
        return format_moment(moment, time_zone(zone), language)
    except (ValueError, OverflowError):  # a date the calendar functions cannot show
        return header_value(message, "Date")


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
    name = clean_text(raw or "").replace("\n", " ")
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


def unique_name(name: str, taken: set[str]) -> str:
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


def extract(message: EmailMessage, labels: dict[str, str]) -> tuple[str, list[Attachment]]:
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

    attachments: list[Attachment] = []
    taken: set[str] = set()
    for part in _leaves(message):
        if id(part) in skip:
            continue
        mime_type = part.get_content_type()
        if not _MIME_TYPE.match(mime_type):
            mime_type = "application/octet-stream"
        extension = mimetypes.guess_extension(mime_type, strict=False) or ".bin"
        fallback = labels["fallback_name"].format(n=len(attachments) + 1) + extension
        name = unique_name(_safe_filename(part.get_filename(), fallback), taken)
        attachments.append(Attachment(name, mime_type, _attachment_data(part)))
    return text, attachments
