"""Test data and PDF-tool helpers shared by the password_pdf tests."""

from __future__ import annotations

import hashlib
import os
import subprocess
from email.message import EmailMessage
from pathlib import Path

PASSWORD = "Grüße-€-Paßwort 7"

BODY = (
    "Sehr geehrte Frau Müller,\n\n"
    "anbei erhalten Sie Ihren Gebührenbescheid über 12,50 € für die Sondernutzung "
    "der Straße vor Ihrem Haus.\n"
    "    Diese Zeile ist eingerückt <b>und enthält Markup</b> & ein Ampersand.\n\n"
    "Mit freundlichen Grüßen\nIhr Ordnungsamt\n"
)
SUBJECT = "Gebührenbescheid Quittungsnummer 4711 Straßenreinigung"
ATTACHMENTS: list[tuple[str, str, bytes]] = [
    ("Bescheid_Müller.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(3000)),
    ("Lageplan.png", "image/png", b"\x89PNG\r\n\x1a\n" + os.urandom(500)),
    ("Заявление.txt", "text/plain", "Заявление über Gebühren\n".encode() * 40),
]

TOOLS = ("qpdf", "pdftotext", "pdfdetach", "pdfinfo", "pdfimages", "pdfsig")


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=check, timeout=60
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_message(
    body: str = BODY, *, subject: str = SUBJECT, attachments: bool = True
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ordnungsamt Köln <ordnungsamt@stadt-koeln.example>"
    message["To"] = "Jörg Müller <joerg.mueller@example.org>"
    message["Cc"] = "Akte <akte@stadt-koeln.example>"
    message["Date"] = "Fri, 21 Mar 2025 14:05:00 +0100"
    message["Subject"] = subject
    message.set_content(body)
    if attachments:
        for name, mime_type, data in ATTACHMENTS:
            maintype, subtype = mime_type.split("/")
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message
