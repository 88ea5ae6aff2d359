"""Printing PIN letters in the portal tests: what ``siegel letters render`` does, on the
harness's store, with the PINs read back from the PDF by poppler's pdftotext."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from siegel.plugins.pin_letters.cli import CONFIRM_PATH
from siegel.plugins.pin_letters.letter_pdf import Sender, render_letters
from siegel.plugins.pin_letters.letters import LetterBook
from siegel.testing import Harness

PIN = re.compile(r"PIN:\s+([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})")


async def print_letters(harness: Harness, tmp_path: Path, tenant_id: str = "test") -> dict[str, str]:
    """Print every pending letter of the tenant; the PIN of each, by account address."""
    tenant = harness.config.tenants[tenant_id]
    book = LetterBook(harness.runtime, tenant_id)
    issued = await book.issue(await book.pending())
    pdf = tmp_path / "letters.pdf"
    pdf.write_bytes(render_letters(issued, sender=Sender(
        name=tenant.name, confirm_url=harness.runtime.portal_link(tenant_id, CONFIRM_PATH),
        max_attempts=5), tenant=tenant))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    pages = text.split("\f")
    found = {}
    for item, page in zip(issued, pages, strict=False):
        match = PIN.search(page)
        assert match, page
        found[item.letter.address] = match.group(1)
    return found
