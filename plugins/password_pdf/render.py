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

import io
import logging
import time
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Final, Literal

import attrs
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter, copy_into_new_writer
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, Spacer

from siegel.localtime import DEFAULT_TIME_ZONE, UnknownTimeZone, time_zone

from .embedded_files import embed_attachments
from .encrypt import RecipientKey, protect_writer, serialise
from .labels import LABELS
from .layout import (
    REPORTLAB_LOCK,
    attachment_table,
    body_flowables,
    has_unrenderable,
    header_table,
    letterhead_flowables,
    paragraph_styles,
    register_fonts,
    typeset,
)
from .message_parts import Attachment, clean_text, extract, header_value, unique_name
from .signing import PdfSigning, sign_and_serialise

__all__ = [
    "DEFAULT_MAX_BODY_CHARS",
    "Language",
    "Letterhead",
    "render_encrypted",
    "render_message",
]

log = logging.getLogger(__name__)

Language = Literal["de", "en"]

#: Longest body text that is typeset (about 150 pages). A longer text is cut in the
#: rendered pages and embedded in full as a text attachment, so nothing is lost but a
#: huge message cannot keep a worker busy for minutes.
DEFAULT_MAX_BODY_CHARS: Final = 400_000

_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"


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



def render_writer(
    message: EmailMessage, *, letterhead: Letterhead, language: str, max_body_chars: int
) -> PdfFileWriter:
    """The rendered message as a pyHanko writer, not yet serialised.

    Internal to this package: :func:`render_encrypted` encrypts this writer directly,
    so a large attachment is not written out unencrypted and parsed back in.
    """
    if language not in LABELS:
        raise ValueError(f"language must be one of {sorted(LABELS)}, not {language!r}")
    labels = LABELS[language]
    started = time.perf_counter()

    original, attachments = extract(message, labels)
    text = clean_text(original)
    # Where the pages cannot show the text faithfully (too long, or characters the font or
    # reportlab cannot lay out), the text as decoded travels along as a UTF-8 file.
    notice = ""
    if len(text) > max_body_chars:
        notice = "truncated"
    else:
        with REPORTLAB_LOCK:
            register_fonts()
        if has_unrenderable(text):
            notice = "unrenderable"
    if notice:
        full_name = unique_name(labels["full_text_name"], {a.filename.casefold() for a in attachments})
        data = original.encode("utf-8", "replace")
        attachments.append(Attachment(full_name, "text/plain", data))
        shown = text[:max_body_chars] if notice == "truncated" else text
        text = shown + "\n\n" + labels[notice].format(name=full_name)
    del original

    # reportlab keeps module-level state (font registry, per-document font subsets) and
    # is not documented as thread-safe: one layout at a time per process. Layout takes
    # milliseconds; the slow part for big attachments (pyHanko) runs outside the lock.
    with REPORTLAB_LOCK:
        register_fonts()
        styles = paragraph_styles()
        story: list[Flowable] = [
            letterhead_flowables(letterhead, styles),
            Spacer(1, 6 * mm),
            header_table(message, language, labels, styles, letterhead.time_zone),
            Spacer(1, 5 * mm),
        ]
        if text.strip():
            story += body_flowables(text, styles)
        else:
            story.append(Paragraph(labels["no_text"], styles["body"]))
        if attachments:
            story += attachment_table(attachments, language, labels, styles)
        pdf, pages = typeset(
            story,
            title=clean_text(header_value(message, "Subject")) or labels["no_subject"],
            author=clean_text(letterhead.tenant_name),
            language=language,
        )
    layout_ms = (time.perf_counter() - started) * 1000

    # The attachments never pass through reportlab: pyHanko embeds them into a copy of
    # the (small) typeset document.
    writer = copy_into_new_writer(PdfFileReader(io.BytesIO(pdf)))
    if attachments:
        embed_attachments(writer, attachments)
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

    To deliver the PDF encrypted, prefer :func:`render_encrypted`, which does
    not hold an unencrypted copy of the attachments in between.

    :raises ValueError: for an unknown ``language``.
    """
    writer = render_writer(
        message, letterhead=letterhead, language=language, max_body_chars=max_body_chars
    )
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]  # pyHanko is untyped
    return out.getvalue()


def render_encrypted(
    message: EmailMessage,
    *,
    letterhead: Letterhead,
    key: RecipientKey,
    language: Language = "de",
    max_body_chars: int = DEFAULT_MAX_BODY_CHARS,
    signing: PdfSigning | None = None,
) -> bytes:
    """``encrypt_pdf(render_message(...), key)`` without the intermediate plain PDF.

    Same output guarantees as the two steps; the attachments are held once in plain form
    (as decoded from the message) and are never serialised unencrypted, which saves
    about two copies of the attachments at peak. With ``signing``, the PDF carries the tenant's
    PAdES signature, made in the same write.
    """
    writer = render_writer(
        message, letterhead=letterhead, language=language, max_body_chars=max_body_chars
    )
    protect_writer(writer, key)
    if signing is not None:
        return sign_and_serialise(writer, signing)
    return serialise(writer)
