"""PIN letters as one PDF for printing: one DIN 5008 letter a page (form B by default, form A on
request), the address in the field that a DL window envelope shows, the PIN, a QR code to the
confirmation page and the date until which the PIN is valid, in German with an English
translation below.

Positions are DIN 5008 (2020), in mm from the top left of the A4 page:

========================  =======  =======
                          form A   form B
========================  =======  =======
letterhead height           27       45
address field top           27       45
  return line zone         12.7     17.7
  address zone             27.3     27.3
information block top       32       50
fold marks                 87/192  105/210
========================  =======  =======

The address field is 85 mm wide and starts 20 mm from the left edge (its text at 25 mm); the
punch mark is at 148.5 mm. Folded at the form's marks, the field lies behind the window of a
DL envelope (window 90 x 45 mm, 20 mm from the left, 15 mm from the bottom).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal
from xml.sax.saxutils import escape

import attrs
import segno
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Frame, Paragraph, Spacer

from siegel import Tenant
from siegel.pdf_fonts import FONT_BOLD, FONT_REGULAR, register_fonts

from .letters import Issued
from .pins import grouped

PAGE_WIDTH, PAGE_HEIGHT = A4
LEFT: Final = 25 * mm
RIGHT: Final = 20 * mm


@attrs.frozen(kw_only=True)
class Form:
    """The measures of DIN 5008 form A or B (mm from the top of the page)."""

    name: Literal["A", "B"]
    address_top: float
    return_zone: float
    info_top: float
    folds: tuple[float, float]
    text_top: float


FORMS: Final = {
    "A": Form(name="A", address_top=27, return_zone=12.7, info_top=32, folds=(87, 192),
              text_top=80.46),
    "B": Form(name="B", address_top=45, return_zone=17.7, info_top=50, folds=(105, 210),
              text_top=98.46),
}
ADDRESS_LEFT: Final = 20.0
ADDRESS_WIDTH: Final = 85.0
ADDRESS_ZONE: Final = 27.3
INFO_LEFT: Final = 125.0


@attrs.frozen(kw_only=True)
class Sender:
    """Who sends the letters: the authority, from the tenant's configuration."""

    name: str
    letterhead_lines: tuple[str, ...] = ()
    #: The small line above the address (Rücksendeangabe); default: name and first line.
    return_address: str = ""
    confirm_url: str
    max_attempts: int


def _y(top_mm: float) -> float:
    """reportlab's y (from the bottom, in points) of a distance from the top in mm."""
    return float(PAGE_HEIGHT - top_mm * mm)


def _styles() -> dict[str, ParagraphStyle]:
    body = ParagraphStyle("pin-body", fontName=FONT_REGULAR, fontSize=10, leading=13)
    return {
        "body": body,
        "subject": ParagraphStyle("pin-subject", parent=body, fontName=FONT_BOLD, fontSize=11,
                                  leading=14, spaceAfter=8),
        "heading": ParagraphStyle("pin-heading", parent=body, fontName=FONT_BOLD, spaceBefore=6),
        "small": ParagraphStyle("pin-small", parent=body, fontSize=8.5, leading=11),
    }


def _draw_qr(canvas: Canvas, url: str, x: float, y: float, size: float) -> None:
    """The QR code of ``url`` as vector squares, ``size`` points wide, lower left at x, y."""
    code = segno.make(url, error="m", micro=False)
    rows = list(code.matrix_iter(scale=1, border=4))
    module = size / len(rows)
    canvas.setFillColorRGB(0, 0, 0)
    for row_index, row in enumerate(rows):
        for column, dark in enumerate(row):
            if dark:
                canvas.rect(x + column * module, y + size - (row_index + 1) * module,
                            module, module, stroke=0, fill=1)


def _letter(canvas: Canvas, issued: Issued, sender: Sender, tenant: Tenant, form: Form,
            styles: dict[str, ParagraphStyle]) -> None:
    letter = issued.letter
    assert letter.printed_at is not None and letter.valid_until is not None
    # Letterhead, right-aligned above the information block.
    canvas.setFont(FONT_BOLD, 13)
    canvas.drawRightString(PAGE_WIDTH - RIGHT, _y(15), sender.name)
    canvas.setFont(FONT_REGULAR, 8.5)
    for index, line in enumerate(sender.letterhead_lines[:3]):
        canvas.drawRightString(PAGE_WIDTH - RIGHT, _y(20 + index * 4), line)
    # Fold and punch marks at the left edge.
    canvas.setLineWidth(0.3)
    for top in (*form.folds, 148.5):
        canvas.line(3 * mm, _y(top), 8 * mm if top != 148.5 else 10 * mm, _y(top))
    # Address field: the return line at the bottom of its zone, then the address.
    return_line = sender.return_address or " · ".join((sender.name, *sender.letterhead_lines[:1]))
    canvas.setFont(FONT_REGULAR, 7)
    canvas.drawString(LEFT, _y(form.address_top + form.return_zone - 2), return_line[:80])
    canvas.setFont(FONT_REGULAR, 10)
    for index, line in enumerate(letter.recipient.lines):
        canvas.drawString(LEFT, _y(form.address_top + form.return_zone + 4.5 + index * 4.6), line)
    # Information block.
    printed_local = letter.printed_at.astimezone(tenant.time_zone)
    info = (("Unser Zeichen / Our ref.", f"PIN {letter.reference}"),
            ("E-Mail-Konto / Account", letter.address),
            ("Datum / Date", printed_local.strftime("%d.%m.%Y")))
    for index, (label, value) in enumerate(info):
        top = form.info_top + index * 9
        canvas.setFont(FONT_REGULAR, 7.5)
        canvas.drawString(INFO_LEFT * mm, _y(top), label)
        canvas.setFont(FONT_REGULAR, 9.5)
        canvas.drawString(INFO_LEFT * mm, _y(top + 4), value[:42])
    # The text.
    valid_de = tenant.format_time(letter.valid_until, "de")
    valid_en = tenant.format_time(letter.valid_until, "en")
    name = escape(letter.recipient.name)
    account = escape(letter.address)
    url = escape(sender.confirm_url)
    pin = grouped(issued.pin)
    story = [
        Paragraph("Ihre PIN für das Bürgerportal", styles["subject"]),
        Paragraph(f"Guten Tag {name},", styles["body"]),
        Spacer(0, 4),
        Paragraph(
            f"mit dieser PIN bestätigen Sie, dass Ihnen das Konto <b>{account}</b> gehört. "
            f"Melden Sie sich im Portal an, öffnen Sie <b>{url}</b> (oder scannen Sie den "
            "QR-Code) und geben Sie die PIN ein.", styles["body"]),
        Spacer(0, 6),
        Paragraph(f"PIN: <font size=16>{pin}</font>", styles["heading"]),
        Spacer(0, 6),
        Paragraph(f"Gültig bis: <b>{escape(valid_de)}</b>. Die PIN gilt nur einmal; nach "
                  f"{sender.max_attempts} falschen Eingaben wird sie ungültig und Sie können "
                  "im Portal einen neuen Brief anfordern.", styles["body"]),
        Spacer(0, 4),
        Paragraph("Sie haben diesen Brief nicht angefordert? Dann geben Sie die PIN nicht ein "
                  "und melden Sie sich bei uns.", styles["body"]),
        Spacer(0, 4),
        Paragraph("Mit freundlichen Grüßen<br/>" + escape(sender.name), styles["body"]),
        Spacer(0, 10),
        Paragraph("English", styles["heading"]),
        Paragraph(
            f"This PIN confirms that the account <b>{account}</b> is yours. Sign in to the "
            f"portal, open <b>{url}</b> (or scan the QR code) and enter the PIN. Valid until "
            f"<b>{escape(valid_en)}</b>; it works once, and after {sender.max_attempts} wrong "
            "entries it is void (you can then request a new letter on the portal). Did you "
            "not request this letter? Then do not enter the PIN and contact us.",
            styles["small"]),
    ]
    qr_size = 30 * mm
    text_width = PAGE_WIDTH - LEFT - RIGHT - qr_size - 6 * mm
    frame = Frame(LEFT, 25 * mm, text_width, _y(form.text_top) - 25 * mm,
                  leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0, showBoundary=0)
    frame.addFromList(story, canvas)
    if story:  # never silently cut: the texts are ours and fit; a long name must not hide the PIN
        raise ValueError(f"the letter to {letter.address} does not fit on one page")
    _draw_qr(canvas, sender.confirm_url, PAGE_WIDTH - RIGHT - qr_size,
             _y(form.text_top) - qr_size, qr_size)
    canvas.setFont(FONT_REGULAR, 7)
    canvas.drawCentredString(PAGE_WIDTH - RIGHT - qr_size / 2, _y(form.text_top) - qr_size - 9,
                             "Zur PIN-Eingabe / Enter the PIN")


def render_letters(issued: Sequence[Issued], *, sender: Sender, tenant: Tenant,
                   form: Literal["A", "B"] = "B", now: datetime | None = None) -> bytes:
    """One PDF with a page per letter, in the order given."""
    if not issued:
        raise ValueError("no letters to render")
    register_fonts()
    styles = _styles()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=False, pageCompression=1)
    canvas.setTitle(f"PIN-Briefe {tenant.name}")
    canvas.setAuthor(sender.name)
    canvas.setCreator("siegel pin_letters")
    canvas.setSubject(f"{len(issued)} PIN-Briefe")
    for item in issued:
        _letter(canvas, item, sender, tenant, FORMS[form], styles)
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()
