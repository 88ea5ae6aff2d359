"""Rendering: what poppler and qpdf read out of the PDF (text, pages, attachments)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from password_pdf_helpers import ATTACHMENTS, PASSWORD, make_message, run, sha256
from PIL import Image as PILImage
from pyhanko.pdf_utils.reader import PdfFileReader

from siegel.mime import html_to_text
from siegel.plugins.password_pdf import Language, Letterhead, render_message

PdfWriter = Callable[[bytes, str], Path]


def text_of(path: Path, password: str | None = None) -> str:
    args = ["-upw", password] if password else []
    return run("pdftotext", *args, path, "-").stdout


def pages_of(path: Path) -> int:
    match = re.search(r"^Pages:\s+(\d+)$", run("pdfinfo", path).stdout, re.MULTILINE)
    assert match is not None
    return int(match[1])


def squeeze(text: str) -> str:
    """Text without whitespace and page footers, for words wrapped over lines and pages."""
    return "".join(re.sub(r"(Seite|Page) \d+ (von|of) \d+", "", text).split())


def words(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------- text


def test_encrypted_pdf_text_keeps_umlauts_sharp_s_and_euro(encrypted_pdf: Path) -> None:
    text = words(text_of(encrypted_pdf, PASSWORD))
    for expected in (
        "Sehr geehrte Frau Müller,",
        "Gebührenbescheid über 12,50 € für die Sondernutzung",
        "Straße",
        "Mit freundlichen Grüßen",
        "Stadt Köln – Ordnungsamt",
        "Gebührenbescheid Quittungsnummer 4711 Straßenreinigung",
    ):
        assert expected in text


def test_markup_in_plain_text_is_shown_literally(encrypted_pdf: Path) -> None:
    text = text_of(encrypted_pdf, PASSWORD)
    assert "<b>und enthält Markup</b> & ein Ampersand." in text


@pytest.mark.parametrize(
    ("language", "labels", "absent"),
    [
        (
            "de",
            ["Von:", "An:", "Cc:", "Datum:", "Betreff:", "Anlagen", "Seite 1 von 1"],
            "Subject:",
        ),
        (
            "en",
            ["From:", "To:", "Cc:", "Date:", "Subject:", "Attachments", "Page 1 of 1"],
            "Betreff:",
        ),
    ],
)
def test_header_labels_follow_the_language(
    letterhead: Letterhead,
    write_pdf: PdfWriter,
    language: Language,
    labels: list[str],
    absent: str,
) -> None:
    pdf = render_message(make_message(), letterhead=letterhead, language=language)
    text = text_of(write_pdf(pdf, f"{language}.pdf"))
    for label in labels:
        assert label in text
    assert absent not in text
    assert "Jörg Müller <joerg.mueller@example.org>" in text
    # In the tenant's zone (the letterhead's default, Europe/Berlin), with the zone named.
    assert ("21. März 2025, 14:05 Uhr (MEZ)" if language == "de"
            else "21 March 2025, 14:05 CET") in text


def test_unknown_language_is_refused(letterhead: Letterhead) -> None:
    with pytest.raises(ValueError, match="language"):
        render_message(
            make_message(),
            letterhead=letterhead,
            language="fr",  # type: ignore[arg-type]
        )


def test_long_body_runs_over_several_pages(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    body = "\n".join(f"Zeile {n:03d}: Grüße aus der Verwaltung." for n in range(1, 301))
    path = write_pdf(render_message(make_message(body), letterhead=letterhead), "long.pdf")
    pages = pages_of(path)
    assert pages > 3
    text = text_of(path)
    assert "Zeile 001:" in text and "Zeile 300: Grüße aus der Verwaltung." in text
    assert f"Seite {pages} von {pages}" in text


def test_unbroken_words_wrap_inside_the_page(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    word = "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen" * 80  # 4,640 letters
    url = "https://example.org/" + "a1b2c3" * 200
    body = f"Vorher.\n{word}\nMitte.\n{url}\nNachher."
    path = write_pdf(render_message(make_message(body), letterhead=letterhead), "words.pdf")
    text = squeeze(text_of(path))
    assert word in text and url in text
    assert "Vorher." in text and "Nachher." in text
    # Every word box lies within the page (A4 is 595.3 pt wide, with 20 mm margins).
    boxes = run("pdftotext", "-bbox", path, "-").stdout
    x_max = [float(v) for v in re.findall(r'xMax="([\d.]+)"', boxes)]
    assert x_max and max(x_max) <= 595.3 - 56.6 + 1


def test_very_long_body_is_cut_and_embedded_in_full(
    letterhead: Letterhead, write_pdf: PdfWriter, tmp_path: Path
) -> None:
    body = "".join(f"Absatz {n}: Straße, Grüße, 5 €.\n" for n in range(400))
    path = write_pdf(
        render_message(
            make_message(body, attachments=False), letterhead=letterhead, max_body_chars=2000
        ),
        "cut.pdf",
    )
    text = text_of(path)
    assert "Absatz 0:" in text and "Absatz 399:" not in text
    assert "nachricht-volltext.txt" in text
    run("pdfdetach", "-saveall", "-o", tmp_path, path)
    assert (tmp_path / "nachricht-volltext.txt").read_text("utf-8") == body


@pytest.mark.parametrize("foreign", ["שלום, מה שלומך?", "您好，这是您的通知。"])
def test_text_the_pages_cannot_show_is_embedded_as_well(
    letterhead: Letterhead, write_pdf: PdfWriter, tmp_path: Path, foreign: str
) -> None:
    body = f"Guten Tag,\n{foreign}\nEnde.\n"
    message = make_message(body, attachments=False)
    path = write_pdf(render_message(message, letterhead=letterhead), "foreign.pdf")
    assert "nachricht-volltext.txt" in words(text_of(path))
    run("pdfdetach", "-saveall", "-o", tmp_path, path)
    assert (tmp_path / "nachricht-volltext.txt").read_text("utf-8") == body


def test_german_text_needs_no_extra_copy(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    path = write_pdf(
        render_message(make_message(attachments=False), letterhead=letterhead), "d.pdf"
    )
    assert run("pdfdetach", "-list", path).stdout.startswith("0 embedded files")


# -------------------------------------------------------------------------- HTML


HTML = """<!doctype html><html><head><title>Geheimer Titel</title>
<style>.x { color: red } body { background: url(https://tracker.example/p.png) }</style>
<script>document.write('pwned'); fetch('https://evil.example/')</script></head>
<body><h1>Ihr Antrag</h1><p>Hallo <b>Frau&nbsp;Müller</b>, &amp; Grüße &euro;.</p>
<img src="https://tracker.example/pixel.gif" alt="Wappen">
<ul><li>erstens</li><li>zweitens</li></ul>
<table><tr><td>Gebühr</td><td>12,50 €</td></tr></table>
<p>Mehr unter <a href="https://www.stadt.example/antrag">unserer Seite</a>.</p>
<pre>Aktenzeichen:
  4711/2025</pre>
<script type="module">alert('noch ein script')</script>
</body></html>"""


def test_html_to_text_keeps_text_and_drops_code() -> None:
    text = html_to_text(HTML)
    assert "Ihr Antrag" in text
    assert "Hallo Frau Müller, & Grüße €." in text
    assert "[Wappen]" in text
    assert "• erstens\n• zweitens" in text
    assert "Gebühr  |  12,50 €" in text
    assert "unserer Seite <https://www.stadt.example/antrag>." in text
    assert "Aktenzeichen:\n  4711/2025" in text
    for dropped in (
        "pwned",
        "fetch",
        "evil.example",
        "color",
        "tracker",
        "Geheimer Titel",
        "alert",
    ):
        assert dropped not in text


def test_unclosed_head_does_not_hide_the_body() -> None:
    assert html_to_text("<html><head><title>x</title><body><p>Sichtbar</p>") == "Sichtbar"


def test_html_only_message_is_rendered_as_text(
    letterhead: Letterhead, write_pdf: PdfWriter
) -> None:
    message = make_message(attachments=False)
    message.set_content(HTML, subtype="html")
    text = text_of(write_pdf(render_message(message, letterhead=letterhead), "html.pdf"))
    assert "Hallo Frau Müller, & Grüße €." in text
    assert "pwned" not in text and "alert" not in text and "color" not in text


def test_plain_text_is_preferred_over_html(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    message = make_message("Die Textfassung.", attachments=False)
    message.add_alternative("<p>Die HTML-Fassung.</p>", subtype="html")
    path = write_pdf(render_message(message, letterhead=letterhead), "alt.pdf")
    text = text_of(path)
    assert "Die Textfassung." in text and "HTML-Fassung" not in text
    # The HTML alternative is the same message, not an attachment.
    assert run("pdfdetach", "-list", path).stdout.startswith("0 embedded files")


# ------------------------------------------------------------------- attachments


def test_attachments_come_out_with_names_and_exact_bytes(
    encrypted_pdf: Path, tmp_path: Path
) -> None:
    listing = run("pdfdetach", "-upw", PASSWORD, "-list", encrypted_pdf).stdout.splitlines()
    names = sorted(re.sub(r"^\d+: ", "", line) for line in listing[1:])
    assert listing[0] == f"{len(ATTACHMENTS)} embedded files"
    assert names == sorted(name for name, _, _ in ATTACHMENTS)

    out = tmp_path / "saved"
    out.mkdir()
    run("pdfdetach", "-upw", PASSWORD, "-saveall", "-o", out, encrypted_pdf)
    for name, _, data in ATTACHMENTS:
        assert sha256((out / name).read_bytes()) == sha256(data)


def test_attachments_carry_mime_types_and_af_entries(encrypted_pdf: Path) -> None:
    listing = run(
        "qpdf", f"--password={PASSWORD}", "--list-attachments", "--verbose", encrypted_pdf
    ).stdout
    for name, mime_type, _ in ATTACHMENTS:
        block = listing[listing.index(f"preferred name: {name}") :]
        assert f"mime type: {mime_type}" in block.split("preferred name:")[1]

    reader = PdfFileReader(encrypted_pdf.open("rb"))
    reader.decrypt(PASSWORD)
    af = reader.root["/AF"]
    assert sorted(str(spec.get_object()["/UF"]) for spec in af) == sorted(
        n for n, _, _ in ATTACHMENTS
    )
    assert all(spec.get_object()["/AFRelationship"] == "/Unspecified" for spec in af)
    # Name trees are searched by binary search: the keys must be sorted.
    names = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    keys = [names[i].original_bytes for i in range(0, len(names), 2)]
    assert keys == sorted(keys)


def test_attachment_list_is_printed(encrypted_pdf: Path) -> None:
    text = text_of(encrypted_pdf, PASSWORD)
    assert "Anlagen" in text
    for name, mime_type, _ in ATTACHMENTS:
        assert name in text and mime_type in text
    assert "2,9 KB" in text  # Bescheid_Müller.pdf, 3,009 bytes


def test_awkward_names_inline_parts_and_forwarded_mail(
    letterhead: Letterhead, write_pdf: PdfWriter, tmp_path: Path
) -> None:
    message = make_message("Siehe Anlagen.", attachments=False)
    message.add_attachment(b"eins", maintype="text", subtype="plain", filename="../../etc/passwd")
    message.add_attachment(b"zwei", maintype="text", subtype="plain", filename="Passwd")
    message.add_attachment(
        b"drei", maintype="application", subtype="octet-stream", filename="rechnung\u202efdp.exe"
    )
    message.add_attachment(b"ohne Namen", maintype="application", subtype="octet-stream")
    forwarded = make_message("Weitergeleitet.", subject="Alte Nachricht", attachments=False)
    message.add_attachment(forwarded)
    path = write_pdf(render_message(message, letterhead=letterhead), "awkward.pdf")

    out = tmp_path / "saved"
    out.mkdir()
    run("pdfdetach", "-saveall", "-o", out, path)
    assert (out / "passwd").read_bytes() == b"eins"
    assert (out / "Passwd (2)").read_bytes() == b"zwei"
    assert (out / "rechnungfdp.exe").read_bytes() == b"drei"  # bidi override removed
    assert (out / "anlage-4.bin").read_bytes() == b"ohne Namen"
    eml = BytesParser(policy=policy.default).parsebytes((out / "anlage-5.eml").read_bytes())
    assert isinstance(eml, EmailMessage) and eml["Subject"] == "Alte Nachricht"
    assert "Weitergeleitet." in eml.get_content()


def test_inline_image_of_html_mail_is_kept(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    message = make_message("Text.", attachments=False)
    message.add_alternative('<p>Text <img src="cid:logo@x" alt="Logo"></p>', subtype="html")
    html_part = message.get_payload()[1]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG\r\n\x1a\nbild", maintype="image", subtype="png", cid="<logo@x>")
    listing = run(
        "pdfdetach", "-list", write_pdf(render_message(message, letterhead=letterhead), "i.pdf")
    )
    assert listing.stdout.splitlines() == ["1 embedded files", "1: anlage-1.png"]


def test_unknown_charset_still_renders(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    raw = (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: Zeichensatz\r\n"
        b"Content-Type: text/plain; charset=x-unbekannt\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
    )
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    text = text_of(write_pdf(render_message(message, letterhead=letterhead), "cs.pdf"))
    assert "Grüße aus Köln" in text


def test_broken_headers_are_shown_raw(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>\r\nTo: <<<kaputt,,, @@\r\n"
        b"Date: gestern\r\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\r\n\r\nHallo\r\n"
    )
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    text = text_of(write_pdf(render_message(message, letterhead=letterhead), "broken.pdf"))
    for expected in ("Jörg <joerg@example.org>", "<<<kaputt,,, @@", "gestern", "Grüße", "Hallo"):
        assert expected in text


def test_empty_message_renders(letterhead: Letterhead, write_pdf: PdfWriter) -> None:
    text = text_of(write_pdf(render_message(EmailMessage(), letterhead=letterhead), "e.pdf"))
    assert "(ohne Betreff)" in text and "(Diese Nachricht enthält keinen Text.)" in text


# -------------------------------------------------------------------- letterhead


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (0, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_letterhead_logo_is_drawn(write_pdf: PdfWriter) -> None:
    letterhead = Letterhead(tenant_name="Landkreis Beispiel", logo_png=_png(400, 100))
    path = write_pdf(
        render_message(make_message(attachments=False), letterhead=letterhead), "l.pdf"
    )
    images = run("pdfimages", "-list", path).stdout.splitlines()[2:]
    assert len(images) == 1 and images[0].split()[3:5] == ["400", "100"]
    assert "Landkreis Beispiel" in text_of(path)


def test_letterhead_rejects_non_png_logo() -> None:
    with pytest.raises(ValueError, match="PNG"):
        Letterhead(tenant_name="X", logo_png=b"GIF89a....")
    with pytest.raises(ValueError):
        Letterhead(tenant_name="")
