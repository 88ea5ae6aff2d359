"""Embedded files are written (and encrypted) piece by piece; what qpdf and poppler read out must be
the attachment's exact bytes, with the right size and checksum, compressed or not."""

from __future__ import annotations

import hashlib
import os
from email.message import EmailMessage
from pathlib import Path

import pytest
from password_pdf_helpers import PASSWORD, run
from pyhanko.pdf_utils.reader import PdfFileReader

from siegel.plugins.password_pdf import Letterhead, RecipientKey, render_encrypted, render_message

# Larger than the write chunk, and not a multiple of the AES block: padding and chunk seams.
INCOMPRESSIBLE = os.urandom(2 * 1024 * 1024 + 37)
COMPRESSIBLE = b"Zeile eines Bescheids mit Umlauten \xc3\xa4\xc3\xb6\xc3\xbc\n" * 60_000
EXACT_BLOCKS = os.urandom(4096)
FILES = {"zufall.bin": INCOMPRESSIBLE, "liste.csv": COMPRESSIBLE, "bloecke.bin": EXACT_BLOCKS,
         "leer.txt": b""}


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "amt@behoerde.example"
    mail["To"] = "buerger@example.net"
    mail["Subject"] = "Anlagen"
    mail.set_content("Anbei die Unterlagen.\n")
    for name, data in FILES.items():
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return mail


def detached(pdf: Path, tmp_path: Path, password: str | None) -> dict[str, bytes]:
    out = tmp_path / "detached"
    out.mkdir()
    run("pdfdetach", *(["-upw", password] if password else []), "-saveall", "-o", out, pdf)
    return {path.name: path.read_bytes() for path in out.iterdir()}


def params(pdf: Path, password: str | None) -> dict[str, tuple[int, bytes, str | None]]:
    reader = PdfFileReader(pdf.open("rb"))
    if password:
        reader.decrypt(password)
    names = reader.root["/Names"]["/EmbeddedFiles"]["/Names"]
    found = {}
    for index in range(1, len(names), 2):
        spec = names[index].get_object()
        stream = spec["/EF"]["/F"].get_object()
        found[str(spec["/UF"])] = (int(stream["/Params"]["/Size"]),
                                   stream["/Params"]["/CheckSum"].original_bytes,
                                   str(stream.get("/Filter")) if "/Filter" in stream else None)
    return found


def expected_params() -> dict[str, tuple[int, bytes, str | None]]:
    return {name: (len(data), hashlib.md5(data).digest(),
                   "/FlateDecode" if name == "liste.csv" else None)
            for name, data in FILES.items()}


@pytest.mark.parametrize("encrypted", [True, False])
def test_embedded_files_come_out_exactly(tmp_path: Path, letterhead: Letterhead,
                                         recipient_key: RecipientKey, encrypted: bool) -> None:
    pdf = tmp_path / "out.pdf"
    if encrypted:
        pdf.write_bytes(render_encrypted(message(), letterhead=letterhead, key=recipient_key))
    else:
        pdf.write_bytes(render_message(message(), letterhead=letterhead))
    password = PASSWORD if encrypted else None
    run("qpdf", *([f"--password={PASSWORD}"] if encrypted else []), "--check", pdf)
    if encrypted:
        shown = run("qpdf", f"--password={PASSWORD}", "--show-encryption", pdf).stdout
        assert "R = 6" in shown
        for kind in ("stream", "string", "file"):
            assert f"{kind} encryption method: AESv3" in shown
        assert INCOMPRESSIBLE[1000:1100] not in pdf.read_bytes()
        assert COMPRESSIBLE[:40] not in pdf.read_bytes()
    assert detached(pdf, tmp_path, password) == FILES
    assert params(pdf, password) == expected_params()
