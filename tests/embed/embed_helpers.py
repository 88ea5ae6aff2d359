"""A gateway folder for the embedding tests: the district's plugin set (password PDF) for tenant
``test``, the baseline for tenant ``other``, delivery to a real SMTP sink."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from siegel.crypto import create_key_file
from siegel.sink import ReceivedMail, SmtpSink

CITIZEN = "buerger@example.net"
CLERK = "sachbearbeitung@behoerde.example"
OTHER_CLERK = "amt@andere.example"
PASSWORD = "Grüße-€-Paßwort 7"
BODY = "Sehr geehrte Frau Müller,\nIhre Kundennummer 123A456789: anbei der Bescheid.\n"
ATTACHMENT = ("Bescheid_Müller.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8)


def write_gateway(folder: Path, sink: SmtpSink, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    create_key_file(folder / "keys" / "store.key")
    config = folder / "siegel.toml"
    config.write_text(f"""
[[listeners]]
port = 0

[delivery]
poll_seconds = 0.2
first_retry_seconds = 60

[portal]
enabled = false
public_base_url = "https://post.behoerde.example"

[settings.relay]
host = "{sink.host}"
port = {sink.port}
tls = "none"

[tenants.test]
name = "Testbehörde"
domains = ["behoerde.example"]
plugin_set = "district"

[tenants.other]
name = "Andere Behörde"
domains = ["andere.example"]
plugin_set = "baseline"
{extra}
""", encoding="utf-8")
    return config


def registration_token(mail: ReceivedMail) -> str:
    text = mail.parsed.get_body(("plain",)).get_content()
    match = re.search(r"https://post\.behoerde\.example/t/test/register/(\S+)", text)
    assert match, text
    return match.group(1)


def assert_protected(mail: ReceivedMail, folder: Path) -> None:
    """The citizen's copy carries the message only as an encrypted PDF."""
    assert b"123A456789" not in mail.raw
    [part] = [p for p in mail.parsed.iter_attachments() if p.get_filename() == "nachricht.pdf"]
    pdf = folder / "nachricht.pdf"
    pdf.write_bytes(part.get_content())
    assert subprocess.run(["qpdf", "--is-encrypted", str(pdf)]).returncode == 0
    opened = subprocess.run(["pdftotext", "-upw", PASSWORD, str(pdf), "-"], capture_output=True,
                            text=True, check=True)
    assert "123A456789" in opened.stdout


async def arrived(sink: SmtpSink, address: str, count: int = 1,
                  seconds: float = 30.0) -> list[ReceivedMail]:
    """The mails for ``address`` once ``count`` arrived (the worker sends them meanwhile)."""
    import asyncio

    async with asyncio.timeout(seconds):
        while len(sink.to(address)) < count:
            await asyncio.sleep(0.05)
    return sink.to(address)
