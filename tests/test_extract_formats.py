"""The extractor's formats and guards, in-process (the worker runs the same function)."""

from __future__ import annotations

import io
import zipfile

from content_samples import CUSTOMER, docx, pdf, zipped
from siegel import extract_worker
from siegel.extract_worker import MAX_DEPTH, extract


def test_pptx_and_ods_text_is_read_from_their_xml():
    slide = (f'<p:sld xmlns:p="p" xmlns:a="a"><a:p><a:r><a:t>{CUSTOMER[:5]}</a:t></a:r>'
             f'<a:r><a:t>{CUSTOMER[5:]}</a:t></a:r></a:p></p:sld>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("ppt/slides/slide1.xml", slide)
        archive.writestr("ppt/media/image1.png", b"\x89PNG" + bytes(100))
    text, problems = extract(out.getvalue(), 10**6)
    assert CUSTOMER in text and problems == []


def test_cells_of_a_row_are_not_joined_into_one_number():
    sheet = ('<worksheet><sheetData><row><c><v>123</v></c><c><is><t>A456789</t></is></c></row>'
             '</sheetData></worksheet>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    text, _ = extract(out.getvalue(), 10**6)
    assert "123A456789" not in text and "A456789" in text


def test_an_encrypted_zip_member_is_unreadable():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("geheim.txt", b"\x00" * 20)
        archive.writestr("offen.txt", f"Nr {CUSTOMER}")
    # zipfile cannot write encrypted members: set the "encrypted" flag of the first member in
    # its local header and its central directory entry, as an encrypting zip program does.
    data = bytearray(out.getvalue())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    text, problems = extract(bytes(data), 10**6)
    assert problems == ["encrypted"] and CUSTOMER in text


def test_a_document_with_a_dtd_is_not_expanded():
    bomb = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
            '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><d>&b;</d>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", bomb)
    text, problems = extract(out.getvalue(), 10**6)
    assert problems == ["damaged"] and "aaaa" not in text


def test_an_archive_that_expands_beyond_the_limit_is_unreadable(monkeypatch):
    monkeypatch.setattr(extract_worker, "MAX_UNPACKED_BYTES", 1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(3):
            archive.writestr(f"{index}.txt", b" " * (600 * 1024))
    _text, problems = extract(out.getvalue(), 10**6)
    assert "too-large" in problems


def test_archives_nested_too_deep_are_unreadable():
    data = zipped("a.txt", CUSTOMER.encode())
    for index in range(MAX_DEPTH + 1):
        data = zipped(f"{index}.zip", data)
    text, problems = extract(data, 10**6)
    assert problems == ["too-deep"] and CUSTOMER not in text


def test_rtf_legacy_office_and_text_in_a_legacy_charset():
    rtf = ("{\\rtf1\\ansi {\\b " + CUSTOMER[:3] + "}\\b0 " + CUSTOMER[3:] + "\\par M\\'fcller}")
    text, problems = extract(rtf.encode(), 10**6)
    assert CUSTOMER in text and "Müller" in text and problems == []
    assert extract(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), 10**6) == ("", ["not-text"])
    text, problems = extract(f"Kunde Müller {CUSTOMER}".encode("cp1252"), 10**6)
    assert CUSTOMER in text and "Müller" in text and problems == []


def test_pdf_embedded_in_a_docx_and_text_beyond_the_limit():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/embeddings/oleObject1.pdf", pdf(CUSTOMER))
    text, problems = extract(out.getvalue(), 10**6)
    assert CUSTOMER in text and problems == []
    text, problems = extract(docx(CUSTOMER), 5)
    assert problems == ["too-much-text"] and len(text) == 5


def test_names_in_archives_and_text_pasted_into_a_word_document():
    text, problems = extract(zipped(f"Bescheid {CUSTOMER}.png", b"\x89PNG" + bytes(10)), 10**6)
    assert CUSTOMER in text and problems == ["not-text"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/afchunk.htm", f"<p>{CUSTOMER}</p>")
    text, problems = extract(out.getvalue(), 10**6)
    assert CUSTOMER in text and problems == []
