"""Attachments and messages for the content-reading tests, each made here with a real writer
(reportlab and pypdf for PDF, the formats' own zipped XML for office documents)."""

from __future__ import annotations

import io
import zipfile

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

CUSTOMER = "123A456789"
#: The district's customer-number rule (contrib/district.py).
RULES = {"content_rules": {"rules": [
    {"name": "kundennummer", "pattern": r"(?<![0-9A-Za-z])\d{3}[A-Z]\d{6}(?![0-9A-Za-z])",
     "ignore_case": False, "description_de": "Kundennummer",
     "description_en": "customer number"}]}}


def pdf(text: str, *, pages: int = 1, image_only: bool = False) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    page.setTitle("Bescheid")
    for _ in range(pages):
        if image_only:
            page.rect(100, 700, 200, 50, fill=1)  # a drawing, no text
        else:
            page.drawString(72, 720, f"Ihre Kundennummer: {text}")
        page.showPage()
    page.save()
    return out.getvalue()


def encrypted_pdf(text: str, password: str = "geheim") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(text))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _zip(members: dict[str, str | bytes], *, first: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if first is not None:  # ODF: "mimetype" first and stored
            archive.writestr(zipfile.ZipInfo("mimetype"), members.pop(first),
                             compress_type=zipfile.ZIP_STORED)
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def docx(text: str) -> bytes:
    """A Word document whose paragraph has the text split across two runs, as Word writes a
    number that was edited."""
    half = len(text) // 2
    return _zip({
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
        '.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="'
        'application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '</Types>',
        "word/document.xml": f'<?xml version="1.0"?><w:document {_W}><w:body><w:p><w:r><w:t>'
        f'Kunde </w:t></w:r><w:r><w:t>{text[:half]}</w:t></w:r><w:r><w:t>{text[half:]}</w:t>'
        '</w:r></w:p></w:body></w:document>',
    })


def xlsx(text: str) -> bytes:
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    return _zip({
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
        '.org/package/2006/content-types"/>',
        "xl/sharedStrings.xml": f'<?xml version="1.0"?><sst {ns}><si><t>Name</t></si><si><t>'
        f'{text}</t></si></sst>',
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0"?><worksheet {ns}><sheetData><row r="1">'
        '<c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row></sheetData></worksheet>',
    })


def odt(text: str) -> bytes:
    return _zip({
        "mimetype": "application/vnd.oasis.opendocument.text",
        "content.xml": '<?xml version="1.0"?><office:document-content xmlns:office="urn:oasis:'
        'names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:'
        f'xmlns:text:1.0"><office:body><office:text><text:p>Kunde <text:span>{text}</text:span>'
        '</text:p></office:text></office:body></office:document-content>',
    }, first="mimetype")


def zipped(name: str, data: bytes) -> bytes:
    return _zip({name: data})
