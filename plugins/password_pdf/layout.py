"""The reportlab layout: letterhead, header block, body text, attachment list, page numbers.

Nothing in the message is ever interpreted as markup: all text is escaped (:func:`_markup`)
before it reaches reportlab's Paragraph mini-language, whose ``<img src=...>`` would otherwise
read files or URLs. reportlab keeps module-level state, so the layout runs under
:data:`REPORTLAB_LOCK`, one document at a time per process.
"""

from __future__ import annotations

import functools
import io
import re
import threading
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Final
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
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

from siegel.pdf_fonts import FONT_BOLD, FONT_REGULAR
from siegel.pdf_fonts import has_unrenderable as has_unrenderable
from siegel.pdf_fonts import register_fonts as register_fonts

from .labels import LABELS
from .message_parts import Attachment, clean_text, date_text, header_value

if TYPE_CHECKING:
    from .render import Letterhead

_FONT_REGULAR: Final = FONT_REGULAR
_FONT_BOLD: Final = FONT_BOLD
# A4 less 20 mm margins and the 6 pt padding of SimpleDocTemplate's frame on each side.
_CONTENT_WIDTH: Final = A4[0] - 40 * mm - 12
REPORTLAB_LOCK: Final = threading.Lock()


def _markup(text: str) -> str:
    """Plain text to Paragraph markup: escaped, with runs of spaces kept."""
    escaped = escape(text)
    # Paragraph collapses whitespace; keep indentation and columns of plain-text mails.
    escaped = re.sub(r"^ +", lambda m: "&nbsp;" * len(m[0]), escaped)
    return re.sub(r"  +", lambda m: " " + "&nbsp;" * (len(m[0]) - 1), escaped)


def paragraph_styles() -> dict[str, ParagraphStyle]:
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


def letterhead_flowables(letterhead: Letterhead, styles: dict[str, ParagraphStyle]) -> Flowable:
    lines: list[Flowable] = [Paragraph(_markup(clean_text(letterhead.tenant_name)), styles["tenant"])]
    lines += [
        Paragraph(_markup(clean_text(line)), styles["small"]) for line in letterhead.address_lines
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


def header_table(
    message: EmailMessage, language: str, labels: dict[str, str], styles: dict[str, ParagraphStyle],
    zone: str,
) -> Flowable:
    rows = []
    for key, value in (
        ("from", header_value(message, "From")),
        ("to", header_value(message, "To")),
        ("cc", header_value(message, "Cc")),
        ("date", date_text(message, language, zone)),
    ):
        if value or key in ("from", "to"):
            rows.append(
                [
                    Paragraph(labels[key] + ":", styles["label"]),
                    Paragraph(_markup(clean_text(value)), styles["body"]),
                ]
            )
    subject = clean_text(header_value(message, "Subject")) or labels["no_subject"]
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


def body_flowables(text: str, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
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


def attachment_table(
    attachments: Sequence[Attachment],
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


def typeset(story: list[Flowable], *, title: str, author: str, language: str) -> tuple[bytes, int]:
    """Lay out ``story`` with reportlab; returns the PDF and its page count."""
    labels = LABELS[language]
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

